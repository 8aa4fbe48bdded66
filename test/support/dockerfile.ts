// The Dockerfile as data, for tests that check it without a Docker engine: parsed with
// dockerfile-ast (the parser of the Docker language server), stages with their instructions, exec
// forms decoded, ARG defaults substituted into FROM. Also a reader for .dockerignore rules.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';

export interface DockerInstruction {
  readonly keyword: string;
  /** 1-based line of the instruction. */
  readonly line: number;
  /** Arguments without flags, as written. */
  readonly args: readonly string[];
  /** `--from=build` as { from: 'build' }; a flag without value maps to ''. */
  readonly flags: Readonly<Record<string, string>>;
}

export interface DockerStage {
  readonly name: string | undefined;
  /** The base image reference with ARG defaults substituted: `node:24.21.0-bookworm-slim`. */
  readonly image: string;
  readonly instructions: readonly DockerInstruction[];
}

export interface ParsedDockerfile {
  readonly text: string;
  readonly stages: readonly DockerStage[];
}

function flagsOf(instruction: Instruction): Record<string, string> {
  const flags: Record<string, string> = {};
  const withFlags = instruction as Instruction & { getFlags?: () => { getName(): string; getValue(): string | null }[] };
  for (const flag of withFlags.getFlags?.() ?? []) flags[flag.getName()] = flag.getValue() ?? '';
  return flags;
}

function substitute(text: string, args: Record<string, string>): string {
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => args[(braced ?? bare)!] ?? whole);
}

export function parseDockerfile(text: string): ParsedDockerfile {
  const document = DockerfileParser.parse(text);
  const globalArgs: Record<string, string> = {};
  const stages: { name: string | undefined; image: string; instructions: DockerInstruction[] }[] = [];
  for (const instruction of document.getInstructions()) {
    const keyword = instruction.getKeyword().toUpperCase();
    const entry: DockerInstruction = {
      keyword,
      line: instruction.getRange().start.line + 1,
      args: instruction.getArguments().map((arg) => arg.getValue()),
      flags: flagsOf(instruction),
    };
    if (keyword === 'FROM') {
      const [image = '', as, name] = entry.args;
      stages.push({ name: as?.toUpperCase() === 'AS' ? name : undefined, image: substitute(image, globalArgs), instructions: [entry] });
    } else if (stages.length === 0 && keyword === 'ARG') {
      const [assignment = ''] = entry.args;
      const eq = assignment.indexOf('=');
      if (eq > 0) globalArgs[assignment.slice(0, eq)] = assignment.slice(eq + 1);
    } else {
      stages.at(-1)?.instructions.push(entry);
    }
  }
  return { text, stages };
}

export function readDockerfile(file: string): ParsedDockerfile {
  return parseDockerfile(readFileSync(file, 'utf8'));
}

/** The instructions of a stage with this keyword. */
export function instructionsOf(stage: DockerStage, keyword: string): DockerInstruction[] {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword);
}

/** The JSON (exec) form of CMD/ENTRYPOINT, or of HEALTHCHECK's command after `CMD`; undefined for the shell form. */
export function execForm(instruction: DockerInstruction): string[] | undefined {
  const args = instruction.keyword === 'HEALTHCHECK' ? instruction.args.slice(1) : instruction.args;
  try {
    const parsed: unknown = JSON.parse(args.join(' '));
    return Array.isArray(parsed) && parsed.every((part) => typeof part === 'string') ? (parsed as string[]) : undefined;
  } catch {
    return undefined;
  }
}

/** This project's Dockerfile, parsed. */
function projectDockerfile(): ParsedDockerfile {
  return readDockerfile(path.resolve(import.meta.dirname, '../../Dockerfile'));
}

/**
 * The options the image's ENTRYPOINT gives `node` ahead of the ambassador's script. Tests and the
 * bench start the ambassador with them too, so that on any Node they measure what the image runs.
 */
export function imageNodeOptions(dockerfile = projectDockerfile()): string[] {
  const runtime = dockerfile.stages.at(-1);
  const entrypoint = runtime && instructionsOf(runtime, 'ENTRYPOINT').at(-1);
  const command = (entrypoint && execForm(entrypoint)) ?? [];
  const node = command.findIndex((arg) => arg === 'node' || arg.endsWith('/node'));
  const script = command.findIndex((arg, i) => i > node && arg.endsWith('.js'));
  if (node < 0 || script < 0) throw new Error(`the Dockerfile's ENTRYPOINT does not run a script with node in the exec form: ${command.join(' ')}`);
  return command.slice(node + 1, script);
}

/** The Node version of the image's runtime stage (`node:24.21.0-bookworm-slim` -> `24.21.0`); a tag without a full version throws. */
export function imageNodeVersion(dockerfile = projectDockerfile()): string {
  const image = dockerfile.stages.at(-1)?.image ?? '';
  const version = /^node:(\d+\.\d+\.\d+)(?:-|$)/.exec(image)?.[1];
  if (!version) throw new Error(`the Dockerfile's runtime stage is not an official node image with a full version: ${image || 'no FROM'}`);
  return version;
}

/** ENV instructions of a stage merged into one record (`KEY=value` pairs). */
export function envOf(stage: DockerStage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const instruction of instructionsOf(stage, 'ENV')) {
    for (const pair of instruction.args) {
      const eq = pair.indexOf('=');
      if (eq > 0) env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}

/** `.dockerignore` rules in order; the last rule that matches a path decides (Docker's semantics). */
export function dockerignoreMatcher(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'))
    .map((line) => {
      const negated = line.startsWith('!');
      const pattern = (negated ? line.slice(1) : line).replace(/^\/+|\/+$/g, '');
      return { negated, regex: globRegex(pattern) };
    });
  return (path) => {
    let ignored = false;
    const parts = path.split('/');
    for (const rule of rules) {
      // A rule matching a parent directory covers everything under it.
      const hit = parts.some((_, index) => rule.regex.test(parts.slice(0, index + 1).join('/')));
      if (hit) ignored = !rule.negated;
    }
    return ignored;
  };
}

function globRegex(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i]!;
    if (char === '*' && pattern[i + 1] === '*') {
      const slash = pattern[i + 2] === '/';
      source += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (char === '*') source += '[^/]*';
    else if (char === '?') source += '[^/]';
    else source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}
