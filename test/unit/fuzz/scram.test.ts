// Short fuzz budget for SCRAM-SHA-256, server and client (properties: test/support/fuzz-scram.ts).

import { test } from 'node:test';

import { checkShort } from '../../support/fuzz.ts';
import { scramProperties } from '../../support/fuzz-scram.ts';

for (const property of scramProperties()) {
  test(`${property.target}: ${property.name}`, () => checkShort(property));
}
