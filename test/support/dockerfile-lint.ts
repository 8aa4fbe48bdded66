// Hadolint's rules that matter for this image, as checks over a parsed Dockerfile (hadolint itself
// is a Haskell binary that neither Debian nor npm ships). Each finding names hadolint's rule code
// and the line, so a failure reads like hadolint's own report.

import { execForm, instructionsOf, type DockerInstruction, type ParsedDockerfile } from './dockerfile.ts';

export interface LintFinding {
  readonly rule: string;
  readonly line: number;
  readonly message: string;
}

const SHELL_COMMANDS = /(?:^|&&|\|\||;|\|)\s*/;

/** The shell commands of a RUN, split at &&, ||, ; and pipes. */
function commandsOf(run: DockerInstruction): string[][] {
  return run.args
    .join(' ')
    .split(SHELL_COMMANDS)
    .map((command) => command.trim().split(/\s+/).filter((word) => word.length > 0))
    .filter((words) => words.length > 0);
}

export function lintDockerfile(dockerfile: ParsedDockerfile): LintFinding[] {
  const findings: LintFinding[] = [];
  const report = (rule: string, instruction: DockerInstruction, message: string) => findings.push({ rule, line: instruction.line, message });
  const stageNames = new Set<string>();
  const final = dockerfile.stages.at(-1);
  dockerfile.stages.forEach((stage) => {
    const from = stage.instructions[0]!;
    const [name, tag] = stage.image.includes('@') ? [stage.image, 'digest'] : stage.image.split(':');
    if (!stageNames.has(name!)) {
      if (tag === undefined) report('DL3006', from, `always tag the image version explicitly (${stage.image})`);
      if (tag === 'latest') report('DL3007', from, `do not use the latest tag (${stage.image})`);
    }
    let workdir = false;
    let pipefail = false;
    for (const instruction of stage.instructions) {
      const { keyword } = instruction;
      if (keyword === 'ADD') report('DL3020', instruction, 'use COPY instead of ADD for files and folders');
      if (keyword === 'SHELL' && instruction.args.join(' ').includes('pipefail')) pipefail = true;
      if (keyword === 'WORKDIR') {
        workdir = true;
        if (!instruction.args[0]!.startsWith('/') && !instruction.args[0]!.startsWith('$')) report('DL3000', instruction, 'use an absolute WORKDIR');
      }
      if (keyword === 'COPY') {
        const dest = instruction.args.at(-1)!;
        if (!workdir && !dest.startsWith('/')) report('DL3045', instruction, 'COPY to a relative destination without WORKDIR set');
        const from = instruction.flags.from;
        if (from !== undefined && !stageNames.has(from) && !from.includes(':')) report('DL3022', instruction, `COPY --from=${from} names no earlier stage`);
      }
      if (keyword === 'CMD' || keyword === 'ENTRYPOINT') {
        if (!execForm(instruction)) report('DL3025', instruction, `use the JSON form for ${keyword}, so signals reach the process`);
      }
      if (keyword !== 'RUN') continue;
      if (instruction.args.includes('|') && !pipefail) report('DL4006', instruction, 'set -o pipefail (SHELL) before RUN with a pipe');
      const commands = commandsOf(instruction);
      const text = instruction.args.join(' ');
      for (const written of commands) {
        if (written[0] === 'sudo') report('DL3004', instruction, 'do not use sudo');
        const words = written[0] === 'sudo' ? written.slice(1) : written;
        const [command, sub] = words;
        if (command === 'cd') report('DL3003', instruction, 'use WORKDIR to switch to a directory');
        if (command === 'npm' && (sub === 'install' || sub === 'i')) report('DL3016', instruction, 'install from the lockfile with npm ci');
        if (command === 'apt-get' && sub === 'install') {
          const packages = words.slice(2).filter((word) => !word.startsWith('-'));
          for (const pkg of packages) if (!pkg.includes('=')) report('DL3008', instruction, `pin the version of ${pkg} in apt-get install`);
          if (!words.includes('--no-install-recommends')) report('DL3015', instruction, 'apt-get install --no-install-recommends');
          if (!words.includes('-y') && !words.includes('--yes')) report('DL3014', instruction, 'apt-get install -y');
          if (!text.includes('rm -rf /var/lib/apt/lists/*')) report('DL3009', instruction, 'delete the apt lists after installing');
        }
      }
    }
    if (stage.name) stageNames.add(stage.name);
  });
  if (final) {
    const user = instructionsOf(final, 'USER').at(-1);
    const uid = user?.args[0]?.split(':')[0];
    if (!user || uid === 'root' || uid === '0') report('DL3002', user ?? final.instructions[0]!, 'the last USER must not be root');
    const healthchecks = instructionsOf(final, 'HEALTHCHECK');
    if (healthchecks.length === 0) report('HEALTHCHECK', final.instructions[0]!, 'the image has no HEALTHCHECK');
    for (const check of healthchecks) if (!execForm(check)) report('HEALTHCHECK', check, 'HEALTHCHECK CMD in the JSON form');
  }
  return findings;
}
