// The Dockerfile's runtime stage laid out on this machine, for running the image without a Docker
// engine: a directory stands in for the image's WORKDIR and gets exactly what the runtime stage's
// COPY instructions put there (the build stage's outputs: dist/ from the same tsc build, and the
// production dependencies that `npm prune --omit=dev --omit=optional` leaves; the rest from the
// build context, through .dockerignore), the stage's ENV, and its ENTRYPOINT and HEALTHCHECK with
// container paths mapped into the directory. What the image lacks (a dev dependency imported at
// run time, a file not copied) fails here as it would in the container.

import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ensureBuilt } from './ambassador.ts';
import { dockerignoreMatcher, envOf, execForm, instructionsOf, readDockerfile } from './dockerfile.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const TINI = '/usr/bin/tini';

export interface StagedImage {
  /** Stands for the image's WORKDIR. */
  readonly dir: string;
  /** The runtime stage's ENV. */
  readonly env: Readonly<Record<string, string>>;
  /** ENTRYPOINT + CMD, paths mapped; tini left out when this machine has none (.ci/run installs it). */
  readonly command: readonly string[];
  /** The HEALTHCHECK command, paths mapped. */
  readonly healthcheck: readonly string[];
  /** A container path under WORKDIR as a path in `dir` (others unchanged). */
  hostPath(containerPath: string): string;
  remove(): void;
}

/** node_modules as the build stage leaves it: the production dependency tree, optional ones left out. */
async function productionModules(target: string): Promise<void> {
  const { stdout } = await run('npm', ['ls', '--omit=dev', '--omit=optional', '--all', '--parseable'], { cwd: ROOT, maxBuffer: 16 << 20 });
  // npm ls still lists optional dependencies of production ones (pg's pg-cloudflare) that prune drops.
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { optional?: boolean }> };
  const packages = stdout
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith(path.join(ROOT, 'node_modules') + path.sep))
    .filter((line) => !lock.packages[path.relative(ROOT, line)]?.optional);
  for (const source of packages.sort()) {
    const destination = path.join(target, path.relative(path.join(ROOT, 'node_modules'), source));
    if (existsSync(destination)) continue; // copied with its parent package
    mkdirSync(path.dirname(destination), { recursive: true });
    // Packages nested in a copied package's own node_modules are production ones too. Hard links
    // make the copy cheap; across filesystems it is a real copy.
    await run('cp', ['-al', source, destination]).catch(() => cpSync(source, destination, { recursive: true, verbatimSymlinks: true }));
  }
}

export async function stageRuntimeImage(): Promise<StagedImage> {
  const dockerfile = readDockerfile(path.join(ROOT, 'Dockerfile'));
  const [build, runtime] = [dockerfile.stages.find((stage) => stage.name === 'build')!, dockerfile.stages.at(-1)!];
  const buildDir = instructionsOf(build, 'WORKDIR').at(-1)!.args[0]!;
  const workdir = instructionsOf(runtime, 'WORKDIR').at(-1)!.args[0]!;
  const ignored = dockerignoreMatcher(readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'));
  await ensureBuilt();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-amb-image-'));
  const hostPath = (containerPath: string) =>
    containerPath === workdir || containerPath.startsWith(`${workdir}/`) ? path.join(dir, path.relative(workdir, containerPath)) : containerPath;
  const buildOutputs: Record<string, (target: string) => Promise<void> | void> = {
    [`${buildDir}/node_modules`]: productionModules,
    [`${buildDir}/dist`]: (target) => cpSync(path.join(ROOT, 'dist'), target, { recursive: true }),
  };
  try {
    for (const copy of instructionsOf(runtime, 'COPY')) {
      const sources = copy.args.slice(0, -1);
      const dest = path.posix.resolve(workdir, copy.args.at(-1)!);
      for (const source of sources) {
        const into = copy.args.at(-1)!.endsWith('/') ? path.posix.join(dest, path.posix.basename(source)) : dest;
        if (copy.flags.from !== undefined) {
          const make = buildOutputs[source];
          if (!make) throw new Error(`Dockerfile line ${copy.line}: the stager does not know how the build stage makes ${source}`);
          await make(hostPath(into));
        } else {
          if (ignored(source)) throw new Error(`Dockerfile line ${copy.line}: ${source} is excluded by .dockerignore`);
          mkdirSync(path.dirname(hostPath(into)), { recursive: true });
          cpSync(path.join(ROOT, source), hostPath(into), { recursive: true });
        }
      }
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const mapped = (command: string[]) => command.map(hostPath);
  let command = [...execForm(instructionsOf(runtime, 'ENTRYPOINT').at(-1)!)!, ...(execForm(instructionsOf(runtime, 'CMD').at(-1)!) ?? [])];
  if (command[0] === TINI && command[1] === '--' && !existsSync(TINI)) command = command.slice(2);
  return {
    dir,
    env: envOf(runtime),
    command: mapped(command),
    healthcheck: mapped(execForm(instructionsOf(runtime, 'HEALTHCHECK').at(-1)!)!),
    hostPath,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
