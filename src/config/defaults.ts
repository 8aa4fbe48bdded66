// The defaults table: every default the config has, in one place, one comment per key. Values are
// written the way a config file would write them (`'5s'`, `'1GiB'`); the schema parses them like
// any other input, so a default can never be of a different form than a user's value.
// config/ambassador.example.yaml mirrors this table key for key (a unit test holds them together).
// Keys with no entry here have no default: they are optional (absent unless set) or required.

export const DEFAULTS = {
  listen: {
    /** Address clients connect to; loopback, as a sidecar serves only its own pod/host. */
    host: '127.0.0.1',
    /** Port clients connect to; 0 lets the OS choose (tests). */
    port: 5432,
    /** Client connections accepted at once; the next gets SQLSTATE 53300 "too many clients". */
    maxClientConnections: 1000,
    /** Time a client has from connecting to finishing authentication. */
    loginTimeout: '10s',
    /** Largest client message accepted (Postgres' own ceiling is 1 GiB). */
    maxMessageSize: '1GiB',
    /** Largest startup packet accepted, as Postgres (MAX_STARTUP_PACKET_LENGTH). */
    maxStartupPacketSize: 10000,
    /** Most parameters a startup packet may carry (libpq sends fewer than 10). */
    maxStartupParameters: 64,
    /** Client connections one user may hold at once; 0: no limit beyond maxClientConnections. */
    maxClientConnectionsPerUser: 0,
    /** A client idle between transactions this long is disconnected (57P05); 0: never. */
    clientIdleTimeout: 0,
    /** A client idle inside a transaction this long is disconnected (25P03), its transaction rolled back; 0: never. */
    idleInTransactionTimeout: 0,
    /** Client bytes read ahead of the server per client before its socket stops being read. */
    maxClientBuffer: '1MiB',
    /** Cancel requests forwarded to servers at once; more are dropped (a cancel is best effort). */
    maxConcurrentCancels: 64,
    rateLimit: {
      /** New transactions per second each user may start; 0: no limit. */
      transactionsPerSecond: 0,
      /** Transactions a user may start at once above the rate (0: one second's worth). */
      burst: 0,
      /** Longest a transaction waits for its turn before it fails with 53400. */
      maxWait: '1s',
    },
    tls: {
      /** Oldest TLS version offered to clients (TLSv1.2 or TLSv1.3). */
      minVersion: 'TLSv1.2',
      /** Refuse clients that do not ask for TLS (needs cert and key). */
      required: false,
    },
  },
  clientAuth: {
    /** How clients prove who they are: trust (no check), scram-sha-256 or md5. */
    method: 'trust',
    /** Users allowed in when method is scram-sha-256 or md5; none by default. */
    users: [],
  },
  upstream: {
    /** Applied to each entry of upstream.hosts (upstream.hosts itself has no default). */
    eachHost: {
      /** Postgres port of a host given without one. */
      port: 5432,
      /** auto: discovered with pg_is_in_recovery(); primary/replica: fixed. */
      role: 'auto',
      /** Share of reads a replica gets relative to the others (0: none). */
      weight: 1,
    },
    /** Applied to upstream.credentials according to its type. */
    credentials: {
      env: {
        /** Environment variable read (at each connect) for the upstream password. */
        variable: 'UPSTREAM_PASSWORD',
      },
      exec: {
        /** Time the command may take to print the password. */
        timeout: '5s',
      },
      'aws-rds-iam': {
        /** Fetch a new token this long before the current one expires (tokens last 15 min). */
        refreshMargin: '5m',
      },
      'gcp-cloudsql-iam': {
        /** Fetch a new token this long before the current one expires. */
        refreshMargin: '5m',
      },
      'azure-ad': {
        /** OAuth scope requested for Azure Database for PostgreSQL. */
        scope: 'https://ossrdbms-aad.database.windows.net/.default',
        /**
         * Fetch a new token this long before the current one expires. Under 5m: the Azure library
         * hands out its cached token until less than 5 minutes remain.
         */
        refreshMargin: '4m',
      },
    },
    /** Time allowed to open a connection to a host (TCP + TLS + authentication). */
    connectTimeout: '5s',
    retry: {
      /** Further attempts after a failed upstream connect (0: no retries). */
      max: 3,
      /** Delay before the first retry; doubles each attempt, with jitter. */
      initialDelay: '100ms',
      /** Ceiling of the retry delay. */
      maxDelay: '5s',
    },
    tls: {
      /** disable | prefer (TLS if offered) | require | verify-ca | verify-full, as libpq's sslmode. */
      mode: 'prefer',
      /** Oldest TLS version accepted from the server. */
      minVersion: 'TLSv1.2',
    },
  },
  pool: {
    /** session: a server connection per client; transaction: per transaction. */
    mode: 'session',
    /** Most server connections per host. */
    size: 20,
    /** Server connections kept open per host even when idle. */
    minIdle: 0,
    /** Close a server connection idle this long (0: never). */
    idleTimeout: '10m',
    /** Close a server connection this old once it is idle (0: never); jittered. */
    maxLifetime: '1h',
    /** Time a client waits for a server connection before an error. */
    acquireTimeout: '5s',
    /**
     * Transaction mode: keep unnamed extended-protocol statements on servers, shared by text, as
     * named ones are, so a text parsed again is planned from the server's cache (see the README).
     */
    cacheUnnamedStatements: false,
  },
  routing: {
    /** Send read-only statements to replicas. */
    readWriteSplit: false,
    /** How a replica is chosen: round-robin | random | least-connections. */
    loadBalance: 'round-robin',
    /** off, or lsn: after a write, a client reads from replicas that have replayed it. */
    readYourWrites: 'off',
    /** Replicas further behind than this (a duration, or a WAL distance like 16MB) get no reads. */
    maxReplicaLag: '10s',
    /** Reads go to the primary: fallback (when no replica qualifies) | never | always. */
    readsFromPrimary: 'fallback',
    functions: {
      /** Functions that never write although the catalog marks them VOLATILE (name or schema.name). */
      allow: [],
      /** Functions that always send a statement to the primary (name or schema.name). */
      deny: [],
      /** How often each database's function catalog (pg_proc) is re-read; DDL also triggers a read. */
      refreshInterval: '5m',
    },
  },
  health: {
    /** Time between health probes of each host. */
    interval: '1s',
    /** Time a probe may take before it counts as failed. */
    timeout: '1s',
    /** Consecutive failed probes before a host is marked down. */
    failureThreshold: 3,
    circuitBreaker: {
      /** Consecutive connect failures that open the breaker (no new connections to the host). */
      threshold: 5,
      /** Time the breaker stays open before one trial connection. */
      cooldown: '10s',
    },
    /** Time clients are held waiting for a new primary before they get an error. */
    failoverTimeout: '30s',
  },
  shutdown: {
    /** Time given to sessions to finish after SIGTERM before they are closed. */
    timeout: '30s',
    /** Keep accepting new clients this long after SIGTERM (lets load balancers notice). */
    acceptGrace: '0s',
  },
  admin: {
    /** Address of the admin HTTP endpoint (/metrics, /livez, /readyz, /startupz, /config, /reload, /quitquitquit). */
    host: '127.0.0.1',
    /** Port of the admin HTTP endpoint; 0 lets the OS choose. */
    port: 9187,
    /** Users who may open the SQL admin console (database "ambassador"); none by default. */
    users: [],
  },
  logging: {
    /** trace | debug | info | warn | error | fatal | silent. */
    level: 'info',
    /** json (one object per line) | pretty (for terminals). */
    format: 'json',
    /** Log statements: off | slow (slower than slowQueryThreshold) | all. */
    queries: 'off',
    /** Statements slower than this are logged when queries is slow. */
    slowQueryThreshold: '1s',
    /** Log each client login and disconnection at info (as PgBouncer's log_connections). */
    connections: true,
  },
} as const;
