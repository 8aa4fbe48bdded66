// --against REF: the commit a ref names, its tree extracted without .git, and the build prepared
// in a directory of its own with this checkout's node_modules. On a throwaway git repository.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import { extractCommit, prepareOtherBuild, resolveCommit } from '../../../bench/other-build.ts';

const made: string[] = [];
after(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** A repository with two commits of version.txt ("one", then "two") and an untracked node_modules/. */
function repository(): string {
  const repo = tempDir('other-build-repo-');
  const git = (...args: string[]): string => execFileSync('git', ['-C', repo, '-c', 'user.name=bench', '-c', 'user.email=bench@example.invalid', ...args], { encoding: 'utf8' });
  git('init', '--quiet');
  for (const version of ['one', 'two']) {
    writeFileSync(path.join(repo, 'version.txt'), version);
    git('add', 'version.txt');
    git('commit', '--quiet', '-m', version);
  }
  mkdirSync(path.join(repo, 'node_modules'));
  return repo;
}

test('a ref resolves to its commit, whose tree is extracted without .git; a ref naming nothing is refused by name', () => {
  const repo = repository();
  const first = resolveCommit(repo, 'HEAD~1');
  assert.match(first, /^[0-9a-f]{40}$/);
  assert.notEqual(first, resolveCommit(repo, 'HEAD'));
  const dest = tempDir('other-build-tree-');
  extractCommit(repo, first, dest);
  assert.equal(readFileSync(path.join(dest, 'version.txt'), 'utf8'), 'one');
  assert.equal(existsSync(path.join(dest, '.git')), false);
  assert.equal(existsSync(path.join(dest, '.archive.tar')), false, 'the archive is removed once extracted');
  assert.throws(() => resolveCommit(repo, 'no-such-branch'), /--against no-such-branch: .*other-build-repo-.* has no commit of that name/);
});

test('the other build is made in its own directory, on the checkout\'s node_modules', async () => {
  const repo = repository();
  const compiled: string[] = [];
  const lines: string[] = [];
  const build = await prepareOtherBuild(repo, 'HEAD~1', async (root) => void compiled.push(root), (line) => lines.push(line));
  made.push(build.root);
  assert.equal(build.commit, resolveCommit(repo, 'HEAD~1'));
  assert.deepEqual(compiled, [build.root], 'compiled once, there');
  assert.notEqual(build.root, repo);
  assert.equal(readFileSync(path.join(build.root, 'version.txt'), 'utf8'), 'one');
  assert.equal(readlinkSync(path.join(build.root, 'node_modules')), path.join(repo, 'node_modules'));
  assert.match(lines.join('\n'), new RegExp(`commit ${build.commit.slice(0, 12)} extracted to ${build.root}`));
});
