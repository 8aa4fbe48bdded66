// Public surface of the config module: load (file -> env -> flags), validate, freeze, redact,
// and the store that swaps the config whole on reload. Modules receive a Config through their
// constructors; nothing reads a global config.

export { loadConfig, parseConfigText, formatKeyPath, type LoadOptions } from './load.ts';
export { redactConfig, formatConfig, isSecretKey, REDACTED } from './redact.ts';
export { ConfigStore, type ReloadResult } from './store.ts';
export { parseDuration, parseByteSize, classifyPassword, type PasswordKind, type ReplicaLag } from './values.ts';
export { ENVIRONMENT_VARIABLES } from './env.ts';
export { DEFAULTS, ConfigSchema, CREDENTIAL_TYPES, type Config, type ConfigInput, type DeepPartial } from './schema.ts';
