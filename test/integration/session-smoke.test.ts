import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startTestAmbassador, viaAmbassador, type TestAmbassador } from '../support/ambassador.ts';
import { getTopology, type Topology } from '../support/topology.ts';

let topology: Topology;
let amb: TestAmbassador;

before(async () => {
  topology = await getTopology();
  amb = await startTestAmbassador(topology);
});
after(async () => {
  await amb?.stop();
});

test('pg connects through the ambassador and runs simple and extended queries', async () => {
  const client = new pg.Client(viaAmbassador(amb.port));
  await client.connect();
  try {
    const simple = await client.query('select 1 as one, current_user as who');
    assert.deepEqual(simple.rows, [{ one: 1, who: 'app' }]);
    const extended = await client.query('select $1::int + 1 as n', [41]);
    assert.equal(extended.rows[0].n, 42);
    const named = { name: 'add-one', text: 'select $1::int + 1 as n' };
    for (let i = 0; i < 5; i++) {
      const r = await client.query({ ...named, values: [i] });
      assert.equal(r.rows[0].n, i + 1);
    }
  } finally {
    await client.end();
  }
});
