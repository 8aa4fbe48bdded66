// Which function calls make a read unsafe for a replica (PURE: no I/O).
//
// A call is judged in this order, first match wins:
//   1. config `deny`                          -> write   ('writing-function:<name>')
//   2. built-in writing / primary-only list    -> write   ('writing-function:<name>')
//   3. config `allow`                          -> read
//   4. built-in harmless-on-a-standby list     -> read    (random, now, pg_is_in_recovery, ...)
//   5. the injected FunctionCatalog            -> 'write' ('volatile-function:<name>') or read
//   6. built-in read-only / stable list        -> read
//   7. anything else                           -> write   ('unknown-function:<name>')
// Built-in lists apply only to unqualified names and `pg_catalog.` ones: pg_catalog comes first
// on the default search_path, so an unqualified `random()` is the catalog's. Names compare
// exactly as the parser hands them over (unquoted identifiers are already lower case; a quoted
// "NextVal" is a different, unknown function and so writes). List 4 comes before the catalog
// because a real pg_proc marks many introspection functions VOLATILE (pg_is_in_recovery,
// pg_relation_size, ...): judged by the catalog alone they would all go to the primary.

/** Injected by the caller; catalogFromRows() builds one from the primary's pg_proc. */
export interface FunctionCatalog {
  isWriting(name: string, schema?: string): 'write' | 'read' | 'unknown';
}

/** In-memory catalog: `volatile` names write, `readOnly` names read, the rest are unknown. */
export class InMemoryFunctionCatalog implements FunctionCatalog {
  private readonly volatile: Set<string>;
  private readonly readOnly: Set<string>;

  /** Entries are `name` (any schema) or `schema.name`. */
  constructor(entries: { volatile?: Iterable<string>; readOnly?: Iterable<string> } = {}) {
    this.volatile = new Set(entries.volatile ?? []);
    this.readOnly = new Set(entries.readOnly ?? []);
  }

  isWriting(name: string, schema?: string): 'write' | 'read' | 'unknown' {
    const qualified = schema === undefined ? undefined : `${schema}.${name}`;
    if (this.volatile.has(name) || (qualified !== undefined && this.volatile.has(qualified))) return 'write';
    if (this.readOnly.has(name) || (qualified !== undefined && this.readOnly.has(qualified))) return 'read';
    return 'unknown';
  }
}

/** A catalog that knows nothing: every function not on a built-in list is treated as writing. */
export const EMPTY_FUNCTION_CATALOG: FunctionCatalog = { isWriting: () => 'unknown' };

/** One row of `SELECT n.nspname, p.proname, p.provolatile = 'v' FROM pg_proc p JOIN pg_namespace n ...`. */
export interface ProcRow {
  schema: string;
  name: string;
  volatile: boolean;
}

/**
 * A catalog of every function of a database. The search_path is not known here, so an
 * unqualified name writes when any overload in any schema is volatile and reads when it is known
 * and none is; `schema.name` looks at that schema's overloads only. Unknown names are 'unknown'.
 */
export function catalogFromRows(rows: Iterable<ProcRow>): FunctionCatalog {
  const anySchema = new Map<string, boolean>();
  const bySchema = new Map<string, Map<string, boolean>>();
  for (const { schema, name, volatile } of rows) {
    anySchema.set(name, anySchema.get(name) === true || volatile);
    const names = bySchema.get(schema) ?? new Map<string, boolean>();
    names.set(name, names.get(name) === true || volatile);
    bySchema.set(schema, names);
  }
  return {
    isWriting(name: string, schema?: string): 'write' | 'read' | 'unknown' {
      const volatile = schema === undefined ? anySchema.get(name) : bySchema.get(schema)?.get(name);
      return volatile === undefined ? 'unknown' : volatile ? 'write' : 'read';
    },
  };
}

// Functions that write, take locks, change server or session state, or fail on a standby.
const WRITING_NAMES = new Set([
  'nextval', 'setval', 'currval', 'lastval', 'pg_notify', 'set_config', 'setseed',
  'loread', 'lowrite', 'txid_current_if_assigned', 'pg_terminate_backend', 'pg_cancel_backend',
  'pg_reload_conf', 'pg_rotate_logfile', 'pg_switch_wal', 'pg_create_restore_point',
  'pg_start_backup', 'pg_stop_backup', 'pg_promote', 'pg_log_standby_snapshot',
  'pg_log_backend_memory_contexts', 'pg_import_system_collations', 'pg_extension_config_dump',
  'pg_truncate_visibility_map', 'gin_clean_pending_list', 'pg_stat_clear_snapshot',
  'pg_stat_force_next_flush', 'pg_walfile_name', 'pg_walfile_name_offset',
  'pg_sync_replication_slots',
  // run a query given as text: a volatile function called in it may write
  'ts_stat', 'ts_rewrite',
]);

// Prefixes: every function whose name starts with one of these is treated as writing.
const WRITING_PREFIXES = [
  'pg_advisory', 'pg_try_advisory', 'lo_', 'pg_stat_reset', 'pg_sequence_', 'dblink',
  'txid_current', 'pg_current_xact_id', 'pg_current_wal', 'pg_backup_', 'pg_wal_replay_',
  'pg_replication_origin_', 'pg_replication_slot', 'pg_create_', 'pg_drop_', 'pg_copy_',
  'pg_logical_', 'brin_', 'pg_restore_', 'pg_clear_', 'pg_set_', 'pg_file_',
];

// Neither write nor fail on a standby, though many are VOLATILE in pg_proc (judged before the
// catalog). Some answer for the server that runs them (pg_is_in_recovery, the replay LSNs,
// inet_server_port): a replica's answer is what a read through the proxy gets.
const HARMLESS_ON_STANDBY = new Set([
  // random values, sleeping and the clock
  'random', 'random_normal', 'gen_random_uuid', 'uuidv4', 'uuidv7', 'uuid_generate_v1',
  'uuid_generate_v4', 'pg_sleep', 'pg_sleep_for', 'pg_sleep_until', 'clock_timestamp', 'timeofday',
  'now', 'statement_timestamp', 'transaction_timestamp',
  // server, session and replication introspection
  'version', 'current_setting', 'current_query', 'pg_backend_pid', 'pg_blocking_pids',
  'pg_postmaster_start_time', 'pg_conf_load_time', 'pg_current_logfile', 'pg_jit_available',
  'inet_client_addr', 'inet_client_port', 'inet_server_addr', 'inet_server_port',
  'pg_is_in_recovery', 'pg_is_wal_replay_paused', 'pg_get_wal_replay_pause_state',
  'pg_last_wal_receive_lsn', 'pg_last_wal_replay_lsn', 'pg_last_xact_replay_timestamp',
  'pg_last_committed_xact', 'pg_xact_status', 'txid_status', 'pg_xact_commit_timestamp',
  'pg_control_checkpoint', 'pg_control_init', 'pg_control_recovery', 'pg_control_system',
  'pg_notification_queue_usage', 'pg_collation_actual_version',
  // sizes and partitions
  'pg_database_size', 'pg_relation_size', 'pg_total_relation_size', 'pg_table_size',
  'pg_indexes_size', 'pg_tablespace_size', 'pg_partition_tree', 'pg_partition_ancestors',
]);

// Common immutable/stable built-ins; reads that a catalog without them must not send to primary.
const READ_ONLY_NAMES = new Set([
  // aggregates and window functions
  'count', 'sum', 'avg', 'min', 'max', 'array_agg', 'string_agg', 'bool_and', 'bool_or', 'every',
  'bit_and', 'bit_or', 'bit_xor', 'stddev', 'stddev_pop', 'stddev_samp', 'variance', 'var_pop',
  'var_samp', 'corr', 'covar_pop', 'covar_samp', 'percentile_cont', 'percentile_disc', 'mode',
  'any_value', 'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist', 'ntile', 'lag',
  'lead', 'first_value', 'last_value', 'nth_value', 'xmlagg', 'range_agg', 'grouping',
  // conditionals, casts used as functions
  'coalesce', 'nullif', 'greatest', 'least', 'int2', 'int4', 'int8', 'float4', 'float8',
  'numeric', 'text', 'varchar', 'bool', 'date', 'time', 'timestamp', 'timestamptz', 'interval',
  // strings
  'lower', 'upper', 'initcap', 'length', 'char_length', 'character_length', 'octet_length',
  'bit_length', 'substr', 'substring', 'position', 'strpos', 'overlay', 'trim', 'btrim', 'ltrim',
  'rtrim', 'replace', 'translate', 'concat', 'concat_ws', 'format', 'left', 'right', 'lpad',
  'rpad', 'repeat', 'reverse', 'split_part', 'starts_with', 'string_to_array', 'string_to_table',
  'ascii', 'chr', 'md5', 'sha224', 'sha256', 'sha384', 'sha512', 'encode', 'decode', 'to_hex',
  'quote_ident', 'quote_literal', 'quote_nullable', 'normalize', 'is_normalized', 'unistr',
  'to_char', 'to_number', 'to_date', 'to_timestamp', 'to_ascii', 'convert_from', 'convert_to',
  'like_escape', 'similar_to_escape', 'pg_collation_for', 'casefold',
  // math
  'abs', 'ceil', 'ceiling', 'floor', 'round', 'trunc', 'mod', 'div', 'power', 'pow', 'sqrt',
  'cbrt', 'exp', 'ln', 'log', 'log10', 'sign', 'pi', 'degrees', 'radians', 'sin', 'cos', 'tan',
  'asin', 'acos', 'atan', 'atan2', 'width_bucket', 'scale', 'gcd', 'lcm', 'factorial',
  // date and time
  'date_trunc', 'date_part', 'extract',
  'date_bin', 'age', 'make_date', 'make_time', 'make_timestamp', 'make_timestamptz',
  'make_interval', 'justify_days', 'justify_hours', 'justify_interval', 'isfinite', 'timezone',
  'overlaps', 'date_add', 'date_subtract',
  // arrays, ranges, sets
  'unnest', 'cardinality', 'generate_series', 'generate_subscripts', 'lower_inc', 'upper_inc',
  'lower_inf', 'upper_inf', 'isempty', 'int4range', 'int8range', 'numrange', 'tsrange',
  'tstzrange', 'daterange', 'range_merge', 'row_to_json', 'to_json', 'to_jsonb',
  // session and catalog information (stable, role-independent)
  'current_database', 'current_schema', 'current_schemas', 'current_user', 'session_user',
  'pg_typeof', 'format_type', 'pg_size_pretty', 'pg_size_bytes', 'pg_column_size',
  'pg_table_is_visible', 'pg_type_is_visible', 'pg_function_is_visible', 'obj_description',
  'col_description', 'shobj_description', 'pg_encoding_to_char', 'pg_char_to_encoding',
  'pg_relation_filenode', 'pg_relation_filepath', 'pg_wal_lsn_diff', 'row', 'exists',
  'hashtext', 'hashtextextended', 'to_tsvector', 'to_tsquery', 'plainto_tsquery',
  'phraseto_tsquery', 'websearch_to_tsquery', 'setweight', 'strip', 'numnode', 'querytree',
]);

const READ_ONLY_PREFIXES = [
  'json_', 'jsonb_', 'array_', 'regexp_', 'ts_', 'has_', 'pg_get_', 'to_reg', 'pg_stat_get_',
  'xml', 'num_', 'pg_has_', 'string_',
];

export type FunctionVerdict = { writes: false } | { writes: true; reason: string };

const READ: FunctionVerdict = { writes: false };

/** Lists that the classifier's options add to the built-in ones. */
export interface FunctionPolicy {
  catalog: FunctionCatalog;
  allow: ReadonlySet<string>;
  deny: ReadonlySet<string>;
}

/** Builds the policy; allow/deny entries are `name` or `schema.name`. */
export function functionPolicy(catalog: FunctionCatalog, allow: readonly string[] = [], deny: readonly string[] = []): FunctionPolicy {
  return { catalog, allow: new Set(allow), deny: new Set(deny) };
}

function listed(list: ReadonlySet<string>, name: string, schema: string | undefined): boolean {
  return list.has(name) || (schema !== undefined && list.has(`${schema}.${name}`));
}

function startsWithAny(name: string, prefixes: readonly string[]): boolean {
  return prefixes.some((prefix) => name.startsWith(prefix));
}

/** Built-in writing list: always applies to `dblink*` (an extension living in any schema). */
export function isBuiltinWriting(name: string, schema?: string): boolean {
  if (name.startsWith('dblink')) return true;
  if (schema !== undefined && schema !== 'pg_catalog') return false;
  return WRITING_NAMES.has(name) || startsWithAny(name, WRITING_PREFIXES);
}

/** Built-in read-only list (immutable/stable built-ins and the harmless-on-a-standby ones). */
export function isBuiltinReadOnly(name: string, schema?: string): boolean {
  if (schema !== undefined && schema !== 'pg_catalog') return false;
  return HARMLESS_ON_STANDBY.has(name) || READ_ONLY_NAMES.has(name) || startsWithAny(name, READ_ONLY_PREFIXES);
}

/** Decides whether one call (by name and optional schema) makes its statement a write. */
export function judgeFunction(policy: FunctionPolicy, name: string, schema?: string): FunctionVerdict {
  if (listed(policy.deny, name, schema) || isBuiltinWriting(name, schema)) {
    return { writes: true, reason: `writing-function:${name}` };
  }
  if (listed(policy.allow, name, schema)) return READ;
  const builtin = schema === undefined || schema === 'pg_catalog';
  if (builtin && HARMLESS_ON_STANDBY.has(name)) return READ;
  const verdict = policy.catalog.isWriting(name, schema);
  if (verdict === 'write') return { writes: true, reason: `volatile-function:${name}` };
  if (verdict === 'read') return READ;
  if (isBuiltinReadOnly(name, schema)) return READ;
  return { writes: true, reason: `unknown-function:${name}` };
}
