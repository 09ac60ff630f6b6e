"""Generated from the key tables of docs/runbook-format.md by tests/schema/reference_tables.py; do not edit."""

KEYS: dict[str, dict[str, str]] = {'Runbook': {'name': "The runbook's identity: the lock key, history, `run_passed`.",
             'description': 'Shown in plans (the text plan shows its first line).',
             'metadata': 'Owner, risk, escalation, etc.',
             'vars': 'Parameters of the runbook.',
             'environments': 'Per-environment var overrides.',
             'connections': 'Named databases for `sql`, `alembic`, `backfill` and database checks.',
             'on_failure': 'What a failed step does when it has no `on_failure` of its own ([§6](#6-how-a-step-runs)).',
             'steps': 'Run in the order written.',
             'rollback': 'Named procedures for `runbook rollback RUN --option ID`.',
             'success_criteria': 'Checked after the last step.',
             'notifications': 'Announcements at start, end, pause, rollback.',
             'approvals': 'Approver groups named once, and whether `approve --by` may name someone else.'},
 'Metadata': {'owner': 'text and Markdown plans',
              'priority': 'text and Markdown plans',
              'risk': 'text and Markdown plans',
              'estimate': 'informational (plans sum the step estimates)',
              'version': 'the template value `runbook.version`',
              'tags': 'informational',
              'escalation': '"Contact & Escalation" in the Markdown plan',
              'links': 'informational'},
 'Var': {'default': 'Value when nothing else sets it.',
         'env': "Name of an OS environment variable that overrides the default and the environment's value.",
         'required': 'Exit 2 if the var is still `null` once resolved.',
         'secret': 'The value is replaced by `***` in every output, log, event, plan and stored record.',
         'description': 'Shown in the "required" error.',
         'choices': 'The resolved value must be one of these (compared as is, or as text).'},
 'Environment': {'description': 'informational',
                 'vars': 'Overrides. Every name must be a declared var (validation error otherwise).',
                 'protected': 'A new run here must be confirmed: see below.',
                 'approval': 'The policy of every step here that asks for confirmation and has no `approval` of its own.',
                 'hosts': 'The fleet: hosts steps and checks with `on:` run on over ssh ([docs/fleet.md](fleet.md)).',
                 'groups': 'Names for `on:`; `all` is every host unless defined.',
                 'inventory': 'An Ansible inventory file (INI or YAML): its hosts, groups and vars, before the inline ones.',
                 'ssh_config': 'The OpenSSH client configuration (`ssh -F`).'},
 'RollbackOption': {'id': 'Unique among options.',
                    'title': 'Shown in plans.',
                    'description': 'Markdown plan.',
                    'use_when': 'Shown in plans ("use when: ...").',
                    'steps': 'Same syntax as top-level steps, `uses` included. Ids must be unique within the option.'},
 'SuccessCriterion': {'description': 'What must be true.', 'check': 'Evaluated after the last step.'},
 'Notifications': {'channels': 'Where messages go.', 'messages': 'An event with no message sends nothing.'},
 'Channel': {'type': '`console` | `file` | `webhook`',
             'path': '`file` (required there): appended to, relative to the project directory ([§2](#2-where-files-are-found)). Each entry starts `--- <UTC '
                     'time> <title>`. Created with mode 0600, symlinks not followed.',
             'url': '`webhook` (required there; `http://` or `https://` unless it is a template): receives an HTTP POST of `{"text": "*title*\\nbody"}` '
                    '(Slack-compatible).',
             'headers': '`webhook` request headers. Values are templates (`X-Api-Key: "{{ vars.token }}"`), checked by `runbook validate` and rendered when '
                        'the message is sent; values of headers whose name says credential (auth, token, secret, key, cookie, session, passw, signature, '
                        'credential) and secret vars are masked everywhere and never printed.',
             'timeout': '`webhook` timeout of each attempt, in all (connecting, sending, reading the answer).',
             'retries': '`webhook` retries; the delay starts at 0.5 s and doubles. A 4xx answer (except 408 and 429) is not retried.',
             'verify': "`webhook`: check the server's certificate; `false` turns the check off (a test server only).",
             'ca_bundle': "PEM file of the CAs to trust instead of the system's (a private CA). Relative to the runbook's directory.",
             'client_cert': "PEM client certificate for a server that asks for one (mutual TLS); it may hold the key too. Relative to the runbook's directory.",
             'client_key': 'PEM private key of `client_cert`, when it is a file of its own.',
             'events': 'Only these events go to this channel.'},
 'ApprovalSettings': {'allow_delegation': "Whether `runbook approve --by NAME` may record an approval in another person's name (the OS user who gave it is "
                                          'recorded too). Without it, a `--by` other than your OS user is refused (exit 2).',
                      'groups': 'Approver groups, referred to as `group:NAME` in `approvers`.'},
 'ApprovalPolicy': {'required': 'How many different people must approve.',
                    'approvers': 'Who may approve.',
                    'not_by': 'The OS user who started the run may not approve it.'},
 'Step': {'id': 'Unique in the runbook. Used by `needs`, templates, `--only`, `--from`, `--skip`, `approve`.',
          'kind': 'What runs.',
          'title': 'Shown everywhere.',
          'description': 'Informational. Not shown and not part of the fingerprint.',
          'needs': 'These earlier steps must have **passed** in this run, else the step is refused (exit 3).',
          'when': 'Evaluated before the step. If false, the step is recorded as `skipped`. When it reads only vars, `environment` and `runbook`, the plan '
                  'evaluates it too and says `(false here: the run skips this step)`, leaving its estimate out of the total.',
          'preconditions': "Checked before the step. A failure applies the check's `on_fail`.",
          'gates': 'Checked after the step. A failure fails the attempt, unless the gate has `on_fail: warn`.',
          'confirm': 'The question asked before the step runs. Without a terminal the run pauses (exit 4).',
          'approval': 'Who must approve the step, and how many, before it runs (implies a confirmation).',
          'dry_run': 'What `--dry-run` does with the step.',
          'rollback': 'How to undo the step.',
          'irreversible': 'States that there is nothing to undo (silences the validation warning; skipped in rollbacks).',
          'on_failure': 'What a failure of this step triggers.',
          'timeout': 'Limit for one attempt. How it applies depends on the kind ([§12](#12-step-kinds)).',
          'retries': 'Further attempts after a failure.',
          'estimate': 'Summed in plans.',
          'hints': 'Advice printed when the failure output matches.',
          'outputs': "Extra outputs computed from the kind's (`result`).",
          'uses': 'Take the step from `steps/NAME.yaml` ([§11](#11-reusable-step-definitions-uses-and-with)).',
          'with': 'Parameters for `uses`. An error without `uses`.',
          'on': '`command` steps only: run on these hosts over ssh, rendered once per host (`host` in templates) ([docs/fleet.md](fleet.md)).',
          'serial': 'With `on`: hosts per batch; a batch starts when the one before it ended.',
          'max_fail': 'With `on`: more failed hosts than this in a batch stops the rollout before the next batch. The step passes only when every host passed.',
          'parallel': 'With `on`: hosts run at once within a batch.',
          'concurrent': '`command` steps without `confirm`: adjacent steps that all have it run at the same time; the next step starts when all of them ended. '
                        'None of them may `need` another of them ([docs/fleet.md](fleet.md#steps-side-by-side)).'},
 'Retries': {'count': 'Attempts after the first. `retries: 3` means `count: 3`.',
             'delay': 'Wait before the first retry.',
             'backoff': 'The delay is multiplied by this after each retry.'},
 'Check': {'check': 'What to check.',
           'name': "Label in plans and output. Rendered like the check's keys: `name: a backup younger than {{ vars.backup_max_age }} exists`.",
           'description': 'Informational; not shown.',
           'on_fail': 'Preconditions: `halt`, `skip` or `warn` ([§6](#6-how-a-step-runs) step 5). Gates: `warn` makes a failure a warning; `halt` and `skip` '
                      'fail the step (step 8). Success criteria: not consulted.',
           'timeout': 'Used by the `command` check (default 60 s) and the `http` check (default 10 s). Other kinds ignore it.',
           'on': '`command`, `file_exists` and `file_fresh` only: check on these hosts over ssh; rendered once per host (`host` in templates); holds when it '
                 'holds on every one ([docs/fleet.md](fleet.md)).',
           'recheck': 'Gates only: whether `--resume` checks the gate of a passed step again. `auto`: when the step is on the frontier (no other passed step '
                      'needs it); `always`; `never` ([Resuming](#resuming-what-is-carried-over-and-what-is-re-verified)).'},
 'Definition': {'description': 'Shown by tools.',
                'params': 'The parameters `with` may set.',
                'step': 'The step: `kind`, its keys, and any common keys (`title`, `gates`, `dry_run`, ...). It may itself have `uses` (nesting); a cycle is '
                        'an error.'},
 'Parameter': {'type': 'Checked against the `with` value.',
               'required': 'A missing required parameter is an error.',
               'default': 'Used when `with` does not set it. It is not type-checked.',
               'description': 'Quoted in the "needs parameter" error.',
               'choices': 'The `with` value must be one of these.',
               'secret': 'Accepted; currently has no effect (mark the *var* secret instead).'},
 'step:command': {'run': 'A list runs as argv with no shell: each element, rendered, is exactly one argument, and nothing in it is interpreted. **Prefer it '
                         'whenever a value is templated in.** A string runs with `/bin/sh -c`.',
                  'cwd': 'Directory to run in, relative to the project directory ([§2](#2-where-files-are-found)).',
                  'env': 'Added to the environment `runbook` itself runs with.'},
 'step:manual': {'instruction': 'What to do. It is shown as the step\'s "run" in plans and prompts.'},
 'step:sql': {'connection': 'A name from `connections`.',
              'sql': 'A string is split into statements at top-level `;`. Quotes, comments, PostgreSQL dollar-quoted bodies and `BEGIN ... END` bodies of '
                     "`CREATE TRIGGER/FUNCTION/PROCEDURE` (with MySQL's `END IF`, `END LOOP`, `END WHILE`, `END REPEAT` inside) are not cut. On MySQL and "
                     "MariaDB `#` also starts a comment and a backslash escapes a quote in a string; the client's `DELIMITER` command is not SQL and is not "
                     'understood. Each list item is one statement, passed through untouched.',
              'file': "A SQL file, relative to the runbook's directory ([§2](#2-where-files-are-found)). Exactly one of `sql` and `file` is required.",
              'transaction': '`true`: all statements in one transaction (on SQLite an explicit `BEGIN`, so DDL is atomic too; on MySQL and MariaDB DDL commits '
                             'on its own, see below). `false`: each statement autocommits (e.g. `CREATE INDEX CONCURRENTLY`).',
              'lock_timeout': 'PostgreSQL `lock_timeout`. MySQL and MariaDB: `lock_wait_timeout` (a DDL statement waiting behind an open transaction) and '
                              '`innodb_lock_wait_timeout` (row locks), in whole seconds, rounded up with a note. Ignored with a note on other databases.',
              'statement_timeout': 'PostgreSQL `statement_timeout`. MariaDB `max_statement_time` (any statement); MySQL `max_execution_time`, which stops only '
                                   '`SELECT`s (a note says so). Ignored with a note on other databases.',
              'params': 'Bind values for `:name` in the statements. Write `\\:` for a literal colon.'},
 'step:alembic': {'config': "Path of `alembic.ini`, relative to the runbook's directory ([§2](#2-where-files-are-found)). A relative `script_location` inside "
                            "it is alembic's: relative to the working directory, unless written `%(here)s/PATH` (relative to the ini) or `package:PATH`.",
                  'connection': 'A runbook connection whose URL is passed to `env.py` as `sqlalchemy.url` (a `postgresql://` or `postgres://` URL is rewritten '
                                'to `postgresql+psycopg://`, `mysql://` and `mariadb://` to `mysql+pymysql://`: the drivers runbook installs). Without it, '
                                '`env.py` connects as it is configured to.',
                  'command': '`upgrade` | `downgrade` | `stamp` | `current`',
                  'target': 'Required except for `current`, which takes none. A revision, `head`, `heads`, `base`, a relative revision such as `-1` (single '
                            'target only), or a comma-separated list.'},
 'step:backfill': {'connection': 'string',
                   'table': '`name` or `schema.name` (plain identifiers)',
                   'key': 'The key walked in key order: the primary key or a unique index on exactly these columns, in this order, none of them nullable. '
                          'Anything else is refused before any write (exit 3), naming the index that is missing.',
                   'where': "The rows still to do, e.g. `subscriber_id IS NULL`. It selects and counts the rows of each batch; the `resolve` form's writes are "
                            'guarded by it, so a replayed batch is harmless.',
                   'update': "Form 1: your own `UPDATE` for the batch's key range, both ends included (`:lo`..`:hi`). It runs as written: **repeat the `where` "
                             'guard in it** (`WHERE id BETWEEN :lo AND :hi AND customer_id IS NULL`), or a batch replayed after a crash writes its rows again.',
                   'resolve': "Form 2: a `SELECT` returning the key, `value` and `candidates` for the rows still to do in the batch's range. Exactly one of "
                              '`update` and `resolve` is required.',
                   'set_column': 'Required with `resolve`: the column to set to `value`.',
                   'ambiguous': '`resolve` only (an error with `update`). For rows with `candidates > 1`, `skip` leaves them unset and `first` writes `value`.',
                   'batch_size': 'First batch size. It must lie between `min_batch` and `max_batch`.',
                   'min_batch': 'Lower bound of the adaptive batch size.',
                   'max_batch': 'Upper bound.',
                   'target_batch_time': 'The batch size moves toward this time per batch, growing by at most ×2 per batch and shrinking at once after a batch '
                                        'that took longer.',
                   'throttle': 'Pause between batches.',
                   'max_errors': 'Failed batches tolerated (lock or statement timeouts, deadlocks, a dropped connection). Each failure halves the batch size '
                                 'and retries. One more failure fails the step. Errors that a retry would repeat (a wrong type, a constraint violation, an SQL '
                                 'error) fail the step at once.',
                   'lock_timeout': 'PostgreSQL `lock_timeout` per batch; SQLite `busy_timeout`; MySQL and MariaDB `innodb_lock_wait_timeout` and '
                                   "`lock_wait_timeout` for the step's session, in whole seconds (rounded up).",
                   'statement_timeout': 'PostgreSQL `statement_timeout` per batch; MariaDB `max_statement_time`, MySQL `max_execution_time` (`SELECT`s only) '
                                        "for the step's session.",
                   'pause_when': 'Wait instead of hurting the database while any of them holds; see below.',
                   'health_every': 'How often `pause_when` is evaluated (also once before the first batch).',
                   'max_pause': 'A single wait longer than this fails the step; a resume continues after the last committed batch.',
                   'preview': 'Classify and report as a dry run does, in any run: nothing is written and nothing checkpointed ("the dry run first, review, '
                              'then commit" inside one real run; see below).',
                   'report': 'CSV of flagged rows (`key,classification,candidates`, with one column per key column for a key of several, where the '
                             'classification is `ambiguous_first`, `ambiguous_skipped` or `unresolved`), relative to the project directory '
                             '([§2](#2-where-files-are-found)).'},
 'step:http': {'url': '`user:password@` in it becomes a Basic `Authorization` header, and the password is masked.',
               'method': '`GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`, `OPTIONS` (any case)',
               'headers': 'Values of headers whose name contains auth, token, secret, key, cookie, session, passw, signature or credential are masked in '
                          'output.',
               'json': 'JSON request body. `Content-Type: application/json` is added unless set.',
               'expect_status': 'Any other status fails the step.',
               'expect_json': 'Checked against the parsed response. A path walks objects by key and arrays by index (`items.0.id`); a missing path reads as '
                              'null.',
               'verify': "Check the server's certificate; `false` turns the check off (a test server only).",
               'ca_bundle': "PEM file of the CAs to trust instead of the system's (a private CA). Relative to the runbook's directory.",
               'client_cert': "PEM client certificate for a server that asks for one (mutual TLS); it may hold the key too. Relative to the runbook's "
                              'directory.',
               'client_key': 'PEM private key of `client_cert`, when it is a file of its own.'},
 'step:notify': {'message': 'The body.',
                 'subject': "The message's title line (`title` is the step's own title).",
                 'channels': '`events` filters do not apply here.'},
 'check:command': {'': 'exit status 0, the output matches `output_matches` and contains nothing matching `output_excludes` (multiline search). Timeout: check '
                       '`timeout`, default 60 s.'},
 'check:sql': {'': 'the first column of the first row (null if there is no row) meets `expect`'},
 'check:file_exists': {'': 'a regular file matches and is at least `min_size` bytes'},
 'check:file_fresh': {'': 'the newest matching file is no older than `max_age`'},
 'check:table_exists': {'': 'the table is present (or absent with `exists: false`)'},
 'check:column_exists': {'': 'the column is present and, if given, its type is of the same family (`varchar` matches `VARCHAR(20)`, `character varying` and '
                             "`text`; `integer` matches `INT4`, `BIGINT` and MySQL's `INTEGER(11)`; on MySQL `boolean` also matches `TINYINT(1)` and `json` "
                             "MariaDB's `LONGTEXT`, the types those aliases are; character sets and collations are ignored; ...) and its nullability matches"},
 'check:foreign_key_exists': {'': 'a matching, *validated* foreign key exists. On PostgreSQL, a `NOT VALID` key fails both `exists: true` and `exists: '
                                  'false`.'},
 'check:index_exists': {'': 'a matching, *valid* index exists (an index left invalid by a failed `CREATE INDEX CONCURRENTLY` fails). Unique and primary-key '
                            "indexes count (MySQL's is named `PRIMARY`)."},
 'check:alembic_revision': {'': 'the revisions in the version table equal `current` / the script heads; or the scripts have exactly one head. A config or '
                                "script directory that is not found is the check's error."},
 'check:no_long_transactions': {'': 'no other client session has a transaction open longer than `older_than` (holding a lock on one of `tables`, if given). '
                                    'PostgreSQL: `pg_stat_activity` and `pg_locks`. MySQL and MariaDB: `information_schema.INNODB_TRX` with `PROCESSLIST`, for '
                                    "sessions whose database is the connection's; the user needs the PROCESS privilege (without it the check errors rather "
                                    'than pass blind). A plain `SELECT` there holds only a metadata lock, which `information_schema` does not show, so with '
                                    '`tables` every long transaction of such a session counts. On SQLite it passes, marked not applicable.'},
 'check:no_nulls': {'': 'no row has `column` NULL (within `where`). On failure it shows up to 5 primary keys.'},
 'check:no_orphans': {'': 'every non-null `column` value exists in the parent. On failure it shows up to 5 values.'},
 'check:row_count': {'': "the count of rows (of the table, or of the query's result) meets `expect`"},
 'check:http': {'': 'the status is expected, every `expect_json` path meets its expectation, and the body matches. A 3xx in `expect_status` turns off redirect '
                    'following. Proxies are bypassed for loopback addresses. At most 1 MiB of the body is read. Timeout: check `timeout`, default 10 s, for '
                    'the whole request.'},
 'check:run_passed': {'': 'a non-dry run of this runbook passed in `env` (among its latest 50 runs), with the same runbook fingerprint if `same_version`, and '
                          'no longer ago than `within` if given'},
 'check:time_window': {'': 'now is inside `window`: `HH:MM-HH:MM`, optionally after days (`Sat,Sun 01:00-05:00`, `Mon-Fri 22:00-02:00`). The end is exclusive. '
                           'A window may cross midnight; its days name the day it starts on.'},
 'check:value': {'': 'the rendered `value`, read back as a literal, meets `expect` ([§9](#9-expectations))'}}
