// The soak's workers: for each kind, as many as the options give it, each with its own seeded
// random sequence (the run's seed and the worker's position), so a seed replays the same choices
// in each worker (timings still differ from run to run).

import type { Endpoint } from '../bench/pgbench.ts';
import { seededRandom } from '../test/support/random.ts';
import { WORK_KINDS, type WorkKind } from './kinds.ts';
import { BigResultWork } from './work-big-result.ts';
import { DisconnectWork } from './work-disconnect.ts';
import { ItemsWork } from './work-items.ts';
import { LongTxnWork } from './work-long-txn.ts';
import type { Work } from './worker.ts';

function workOf(kind: WorkKind, index: number, endpoint: Endpoint, random: () => number): Work {
  switch (kind) {
    case 'short':
    case 'prepared-pg':
    case 'prepared-postgresjs':
      return new ItemsWork(kind, index, endpoint, random);
    case 'long-txn':
      return new LongTxnWork(index, endpoint, random);
    case 'big-result':
      return new BigResultWork(index, endpoint, random);
    case 'disconnect':
      return new DisconnectWork(index, endpoint, random);
  }
}

export function makeWorks(workers: Readonly<Record<WorkKind, number>>, endpoint: Endpoint, seed: number): Work[] {
  const works: Work[] = [];
  for (const kind of WORK_KINDS) {
    for (let index = 1; index <= workers[kind]; index++) {
      works.push(workOf(kind, index, endpoint, seededRandom((seed + Math.imul(works.length + 1, 0x9e3779b9)) >>> 0)));
    }
  }
  return works;
}
