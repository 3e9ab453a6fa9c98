-- scripts/bench-floor.sql: the floor for `pgready audit`, used by scripts/bench.
--
-- Usage: PGPASSWORD=... psql "$URI" -X -q -v dbs_file=/tmp/some-file -f scripts/bench-floor.sql >/dev/null
--
-- One psql session reads the catalogs and statistics views that pgready reads, then connects
-- to each database that accepts connections (with \c, as pgready does) to list its
-- extensions. No judging, no formatting: the least work a client can do to see the same
-- facts. Needs a superuser (pg_hba_file_rules, pg_authid).
\set ON_ERROR_STOP on
\pset pager off

-- server
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num,
       pg_postmaster_start_time(), pg_is_in_recovery(), current_user,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS is_superuser,
       (SELECT system_identifier FROM pg_control_system()),
       (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS session_ssl;
SELECT r.rolname FROM pg_roles r
 WHERE r.rolname LIKE 'pg\_%' AND pg_has_role(current_user, r.oid, 'USAGE');

-- settings and settings_meta
SELECT name, setting, unit, vartype, source, boot_val, reset_val, context, pending_restart,
       enumvals, sourcefile, sourceline
  FROM pg_settings;

-- hba
SELECT line_number, file_name, type, database, user_name, address, netmask, auth_method,
       options, error
  FROM pg_hba_file_rules;

-- roles and password kinds (the kind only, never the hash)
SELECT r.rolname, r.oid, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
       r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil,
       ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
              WHERE m.member = r.oid) AS member_of
  FROM pg_roles r;
SELECT rolname,
       CASE WHEN rolpassword IS NULL THEN 'none'
            WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram-sha-256'
            WHEN rolpassword LIKE 'md5%' THEN 'md5'
            ELSE 'plain' END AS kind
  FROM pg_authid;

-- databases
SELECT d.datname, d.oid, d.datallowconn, d.datistemplate, d.datconnlimit,
       CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid) END,
       age(d.datfrozenxid), mxid_age(d.datminmxid), pg_encoding_to_char(d.encoding)
  FROM pg_database d;
SELECT * FROM pg_stat_database;

-- stats
SELECT * FROM pg_stat_archiver;
SELECT current_setting('server_version_num')::int >= 170000 AS has_checkpointer \gset
\if :has_checkpointer
SELECT * FROM pg_stat_checkpointer;
\endif
SELECT * FROM pg_stat_bgwriter;
SELECT * FROM pg_stat_wal;

-- replication
SELECT application_name, client_addr, state, sync_state, write_lag, flush_lag, replay_lag
  FROM pg_stat_replication;
SELECT slot_name, slot_type, active, wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) AS retained_bytes
  FROM pg_replication_slots;
SELECT status, sender_host, sender_port, slot_name FROM pg_stat_wal_receiver;

-- ssl of the TCP client sessions
SELECT a.usename, a.datname, a.client_addr, a.application_name, s.ssl
  FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
 WHERE a.backend_type = 'client backend' AND a.client_addr IS NOT NULL;

-- extensions of the current database, then of every other one that accepts connections:
-- write one "\c db" + query pair per database to :dbs_file, then run it.
SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension;
\pset tuples_only on
\pset format unaligned
\o :dbs_file
SELECT format(E'\\c %s\nSELECT extname, extversion, extnamespace::regnamespace FROM pg_extension;',
              quote_ident(datname))
  FROM pg_database
 WHERE datallowconn AND NOT datistemplate AND datname <> current_database()
 ORDER BY datname;
\o
\i :dbs_file
