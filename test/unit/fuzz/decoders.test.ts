// Short fuzz budget for the message decoders, MD5, SASLprep and the request builder
// (properties: test/support/fuzz-decoders.ts).

import { test } from 'node:test';

import { checkShort } from '../../support/fuzz.ts';
import { decoderProperties } from '../../support/fuzz-decoders.ts';

for (const property of decoderProperties()) {
  test(`${property.target}: ${property.name}`, () => checkShort(property));
}
