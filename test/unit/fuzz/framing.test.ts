// Short fuzz budget for the Framer and the StartupReader (properties: test/support/fuzz-framing.ts).

import { test } from 'node:test';

import { checkShort } from '../../support/fuzz.ts';
import { framingProperties } from '../../support/fuzz-framing.ts';

for (const property of framingProperties()) {
  test(`${property.target}: ${property.name}`, () => checkShort(property));
}
