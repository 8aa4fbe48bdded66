// Routing hints in the comments that open a statement (PURE: no I/O).
//
// Only comments before the first token count: `/* ambassador:route=primary */ select ...` or
// `-- ambassador:route=replica` on the first line(s). Recognised keys: `ambassador:route=primary`,
// `ambassador:route=replica`, `ambassador:retry=off`; several may share one comment, the last of a
// key wins, unknown keys and values are ignored. Block comments nest, as in the server's lexer.
// Invariant: scanning stops at the first character that is neither whitespace nor a comment, so a
// hint later in the text (or inside a string) is never seen.

export interface StatementHints {
  hint?: 'primary' | 'replica';
  retry?: 'off';
}

const HINT = /ambassador:(route|retry)\s*=\s*([A-Za-z]+)/g;
const WHITESPACE = new Set([' ', '\t', '\n', '\r', '\f', '\v']);
/** A `--` comment ends at a line feed or a carriage return, as in the server's lexer (and sql-lexer.ts). */
const LINE_END = /[\n\r]/g;

/** End index (exclusive) of a nested block comment starting at `start`, or the text's length. */
function blockCommentEnd(sql: string, start: number): number {
  let depth = 0;
  let index = start;
  while (index < sql.length) {
    if (sql.startsWith('/*', index)) {
      depth += 1;
      index += 2;
    } else if (sql.startsWith('*/', index)) {
      depth -= 1;
      index += 2;
      if (depth === 0) return index;
    } else {
      index += 1;
    }
  }
  return sql.length;
}

/** The leading comments' bodies, in order. */
export function leadingComments(sql: string): string[] {
  const comments: string[] = [];
  let index = 0;
  while (index < sql.length) {
    if (WHITESPACE.has(sql.charAt(index))) {
      index += 1;
    } else if (sql.startsWith('--', index)) {
      LINE_END.lastIndex = index;
      const end = LINE_END.exec(sql)?.index ?? sql.length;
      comments.push(sql.slice(index + 2, end));
      index = end;
    } else if (sql.startsWith('/*', index)) {
      const end = blockCommentEnd(sql, index);
      comments.push(sql.slice(index + 2, end));
      index = end;
    } else {
      break;
    }
  }
  return comments;
}

/** Hints from the leading comments; an empty object when there are none. */
export function readHints(sql: string): StatementHints {
  const hints: StatementHints = {};
  for (const comment of leadingComments(sql)) {
    for (const match of comment.matchAll(HINT)) {
      const key = match[1];
      const value = (match[2] ?? '').toLowerCase();
      if (key === 'route' && (value === 'primary' || value === 'replica')) hints.hint = value;
      if (key === 'retry' && value === 'off') hints.retry = 'off';
    }
  }
  return hints;
}
