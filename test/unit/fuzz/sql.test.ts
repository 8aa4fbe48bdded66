// Short fuzz budget for the SQL lexer, the classifier, literal shapes and session effects
// (properties: test/support/fuzz-sql.ts).

import { test } from 'node:test';

import { checkShort } from '../../support/fuzz.ts';
import { loadSqlProperties } from '../../support/fuzz-sql.ts';

for (const property of await loadSqlProperties()) {
  test(`${property.target}: ${property.name}`, () => checkShort(property));
}
