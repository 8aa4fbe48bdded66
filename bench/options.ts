// A bench script's command line: its options, or the usage printed and an exit code, and the
// check of a numeric option. Its own module, with no imports, so that bench:hot (hot-path.ts)
// loads nothing beyond the forwarder's code for it: loading the bench's targets as well made its
// figures 2-4% slower.

/**
 * A script's options from its command line, or the exit code once the usage was printed: 0 for
 * --help (parse returned null), 2 with the error for bad arguments (parse threw).
 */
export function optionsOrExitCode<T>(parse: () => T | null, usage: string): T | number {
  let options: T | null;
  try {
    options = parse();
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${usage}\n`);
    return 2;
  }
  if (options === null) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  return options;
}

/** `--name`'s value as a positive integer (`fallback` when not given); throws naming the option. */
export function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} expects a positive integer, got ${JSON.stringify(text)}`);
  return value;
}
