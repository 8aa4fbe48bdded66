// `${VAR}` interpolation of config values. In every string value (never in keys) `${VAR}` becomes
// the variable's value, `${VAR:-default}` the default when VAR is unset or empty, and `$${` a
// literal `${`. A `$` not followed by `{` is kept as written. Errors carry the key path of the
// value so the loader can name the file line; they never include a variable's value.

export type KeyPath = readonly (string | number)[];

export type Environment = Readonly<Record<string, string | undefined>>;

export class InterpolationError extends Error {
  readonly path: KeyPath;

  constructor(message: string, path: KeyPath) {
    super(message);
    this.name = 'InterpolationError';
    this.path = path;
  }
}

const REFERENCE = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;

/** Resolves one `${...}` body (the text between the braces). */
function resolveReference(body: string, env: Environment, path: KeyPath): string {
  const match = REFERENCE.exec(body);
  if (!match) {
    throw new InterpolationError(`invalid reference \${${body}}: expected \${NAME} or \${NAME:-default}`, path);
  }
  const name = match[1]!;
  const fallback = match[2];
  const value = env[name];
  if (fallback !== undefined) return value === undefined || value === '' ? fallback : value;
  if (value === undefined) {
    throw new InterpolationError(`environment variable ${name} is not set (write \${${name}:-default} to give a default)`, path);
  }
  return value;
}

/** Interpolates one string value; `path` only labels errors. */
export function interpolateString(text: string, env: Environment, path: KeyPath = []): string {
  if (!text.includes('${')) return text;
  let out = '';
  let index = 0;
  while (index < text.length) {
    if (text.startsWith('$${', index)) {
      out += '${';
      index += 3;
    } else if (text.startsWith('${', index)) {
      const close = text.indexOf('}', index + 2);
      if (close === -1) throw new InterpolationError('unterminated ${ (write $${ for a literal ${)', path);
      out += resolveReference(text.slice(index + 2, close), env, path);
      index = close + 1;
    } else {
      out += text[index];
      index += 1;
    }
  }
  return out;
}

/** A copy of a plain YAML/JSON tree with every string value interpolated. */
export function interpolateTree(value: unknown, env: Environment, path: KeyPath = []): unknown {
  if (typeof value === 'string') return interpolateString(value, env, path);
  if (Array.isArray(value)) return value.map((item, index) => interpolateTree(item, env, [...path, index]));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = interpolateTree(item, env, [...path, key]);
    return out;
  }
  return value;
}
