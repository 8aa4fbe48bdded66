// Every fuzz property, for the long budget (scripts/fuzz.ts). The short budget runs the same
// properties from test/unit/fuzz/*.test.ts, one file per group.

import { decoderProperties } from './fuzz-decoders.ts';
import { framingProperties } from './fuzz-framing.ts';
import { scramProperties } from './fuzz-scram.ts';
import { loadSqlProperties } from './fuzz-sql.ts';
import type { FuzzProperty } from './fuzz.ts';

export async function loadFuzzProperties(): Promise<FuzzProperty[]> {
  return [...framingProperties(), ...decoderProperties(), ...scramProperties(), ...(await loadSqlProperties())];
}
