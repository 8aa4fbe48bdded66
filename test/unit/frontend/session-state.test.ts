import assert from 'node:assert/strict';
import { test } from 'node:test';
import { analyzeSessionEffects } from '../../../src/router/session-effects.ts';
import { ClientSessionState, parseOptions } from '../../../src/frontend/session-state.ts';

const effects = (sql: string) => analyzeSessionEffects(sql).effects;

test('startup parameters, client_encoding included, become replayable SETs; options are unpacked', () => {
  const state = new ClientSessionState(
    new Map([
      ['user', 'u'],
      ['database', 'd'],
      ['client_encoding', 'LATIN1'],
      ['application_name', "it's me"],
      ['options', '-c search_path=a,b --statement-timeout=5s -c x\\ y=1'],
    ]),
  );
  const set = (name: string, value: string): string => `SELECT pg_catalog.set_config('${name}', '${value}', false)`;
  assert.deepEqual(state.syncStatements, [
    set('client_encoding', 'LATIN1'),
    set('application_name', "it''s me"),
    set('search_path', 'a,b'),
    set('statement_timeout', '5s'),
    set('x y', '1'),
  ]);
  assert.deepEqual(parseOptions('-cwork_mem=64MB'), [['work_mem', '64MB']]);
});

test('a SET counts only once its transaction commits; a rollback drops it', () => {
  const state = new ClientSessionState(new Map());
  const before = state.stateKey;
  state.stage(effects('set statement_timeout = 1234'));
  assert.equal(state.stateKey, before);
  state.commit();
  assert.match(state.stateKey, /statement_timeout = 1234/);
  const committed = state.stateKey;
  state.stage(effects("set work_mem = '64MB'"));
  state.discard();
  assert.equal(state.stateKey, committed);
});

test('RESET brings back the startup value; RESET ALL and DISCARD ALL all of them', () => {
  const state = new ClientSessionState(new Map([['application_name', 'app']]));
  const initial = state.stateKey;
  state.stage(effects("set application_name = 'other'; set work_mem = '1MB'"));
  state.commit();
  state.stage(effects('reset application_name'));
  state.commit();
  assert.deepEqual(state.syncStatements, ["set work_mem = '1MB'", "SELECT pg_catalog.set_config('application_name', 'app', false)"]);
  state.stage(effects('reset all'));
  state.commit();
  assert.equal(state.stateKey, initial);
});

test('pins have named reasons and come off with what releases them', () => {
  const state = new ClientSessionState(new Map());
  state.stage(effects('listen a; listen b; declare c cursor with hold for select 1; create temp table t (x int)'));
  assert.deepEqual(state.pinReasons.sort(), ['listen', 'temp-table', 'with-hold-cursor']);
  state.stage(effects('unlisten a; close c'));
  state.commit();
  assert.deepEqual(state.pinReasons.sort(), ['listen', 'temp-table']);
  state.stage(effects('unlisten *'));
  state.commit();
  assert.deepEqual(state.pinReasons, ['temp-table']);
  state.stage(effects('discard all'));
  state.commit();
  assert.equal(state.pinned, false);
});

test('each time a session becomes pinned for a reason is reported once', () => {
  const seen: string[] = [];
  const state = new ClientSessionState(new Map(), (reason) => seen.push(reason));
  state.stage(effects('listen a; listen b; select pg_advisory_lock(1)'));
  state.stage(effects('unlisten *'));
  state.commit();
  state.stage(effects('listen c'));
  assert.deepEqual(seen, ['listen', 'advisory-lock', 'listen']);
});

test('advisory locks: the count reaching zero asks the server before unpinning', () => {
  const state = new ClientSessionState(new Map());
  state.stage(effects('select pg_advisory_lock(id) from jobs'));
  assert.deepEqual(state.pinReasons, ['advisory-lock']);
  state.stage(effects('select pg_advisory_unlock(1)'));
  state.commit();
  assert.equal(state.advisoryRecheck, true);
  assert.equal(state.pinned, true, 'still pinned until the server confirms');
  state.advisoryChecked(false);
  assert.equal(state.pinned, true);
  state.stage(effects('select pg_advisory_unlock(2)'));
  state.commit();
  state.advisoryChecked(true);
  assert.equal(state.pinned, false);
});
