// A second build of the ambassador, from another commit (--against REF), run as a target of its
// own (ambassador-txn-old) beside ambassador-txn, so that every round runs both builds back to
// back and the report takes their ratio per round.
//
// Why: on this machine the same build's throughput moves by ±10% within minutes, more than most
// changes to the hot path, so full runs of two commits made an hour apart cannot tell a change
// from the drift; runs of both builds alternated within each round can.
//
// How: `git archive` of the commit into a temporary directory (removed when the process exits),
// this checkout's node_modules linked in (a commit whose dependencies differ would need its own
// `npm ci`), and the production build (tsc -p tsconfig.build.json) made there.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface OtherBuild {
  /** Where it was extracted and built (its bin/pg-ambassador.js runs dist/ there). */
  root: string;
  /** The full commit id the ref named. */
  commit: string;
}

/** The commit `ref` names in the repository at `repo`; throws an Error naming the ref when it names none. */
export function resolveCommit(repo: string, ref: string): string {
  try {
    return execFileSync('git', ['-C', repo, 'rev-parse', '--verify', '--quiet', `${ref}^{commit}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (error) {
    const why = (error as { code?: string }).code === 'ENOENT' ? 'git is not installed' : `${repo} has no commit of that name`;
    throw new Error(`--against ${ref}: ${why}`);
  }
}

/** Extracts the tree of `commit` (files only, no .git) into `dest`, which must exist. */
export function extractCommit(repo: string, commit: string, dest: string): void {
  const archive = path.join(dest, '.archive.tar');
  execFileSync('git', ['-C', repo, 'archive', '--format=tar', '-o', archive, commit], { stdio: ['ignore', 'ignore', 'pipe'] });
  execFileSync('tar', ['-xf', archive, '-C', dest], { stdio: ['ignore', 'ignore', 'pipe'] });
  rmSync(archive);
}

/**
 * `ref` of the repository at `repo`, extracted into a temporary directory that goes when the
 * process exits, with `repo`'s node_modules linked in and built by `compile`.
 */
export async function prepareOtherBuild(repo: string, ref: string, compile: (root: string) => Promise<void>, log: (line: string) => void): Promise<OtherBuild> {
  const commit = resolveCommit(repo, ref);
  const root = mkdtempSync(path.join(os.tmpdir(), 'pg-ambassador-against-'));
  process.once('exit', () => rmSync(root, { recursive: true, force: true }));
  log(`--against ${ref}: commit ${commit.slice(0, 12)} extracted to ${root}`);
  extractCommit(repo, commit, root);
  symlinkSync(path.join(repo, 'node_modules'), path.join(root, 'node_modules'), 'dir');
  await compile(root);
  return { root, commit };
}
