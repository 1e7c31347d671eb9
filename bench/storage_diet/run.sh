#!/usr/bin/env bash
set -euo pipefail
# #17: the database side of one accepted message, old shape (separate outbox,
# accepted/queued history rows; migrations up to 20261127000001) against the
# new (the message row is its own outbox). Per shape: a fresh database,
# pgbench running the accepting statement (one unpublished message + key per
# transaction), then the relay's claim+mark statements until every message
# is queued. Prints TPS, WAL bytes per accept and per relayed message, wall
# time per relayed message, rows left, table size. Uses role orch_test.
#   CLIENTS=16 SECS=8 bench/storage_diet/run.sh
PGB=$(ls /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -1)
BASE=postgres://orch_test:orch_test@127.0.0.1:5432
cd "$(dirname "$0")"; M=../../migrations/postgres
for shape in old new; do
  db=cost17_$shape; U=$BASE/$db
  psql -q "$BASE/orch_test" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
  if [ $shape = old ]; then files="$M/20261126000001_submit.sql $M/20261127000001_message_ids.sql"; else files=$(ls $M/*.sql); fi
  for f in $files; do psql -q -v ON_ERROR_STOP=1 "$U" -f "$f" >/dev/null; done
  $PGB -n -c 4 -j 2 -T 3 -f accept_$shape.sql "$U" >/dev/null 2>&1  # warm-up
  psql -q "$U" -c "VACUUM ANALYZE orch.messages" >/dev/null 2>&1
  w0=$(psql -Atq "$U" -c "select pg_current_wal_lsn()")
  out=$($PGB -n -c ${CLIENTS:-16} -j 2 -T ${SECS:-8} -f accept_$shape.sql "$U" 2>&1)
  w1=$(psql -Atq "$U" -c "select pg_current_wal_lsn()")
  tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p'); n=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
  lat=$(echo "$out" | sed -n 's/^latency average = \(.*\)$/\1/p')
  wal=$(psql -Atq "$U" -c "select round(pg_wal_lsn_diff('$w1','$w0')/$n)")
  pending0=$(psql -Atq "$U" -c "select count(*) from orch.messages where status='accepted'")
  t0=$(date +%s.%N); r0=$(psql -Atq "$U" -c "select pg_current_wal_lsn()")
  while :; do
    psql -q "$U" -f relay_$shape.sql >/dev/null
    left=$(psql -Atq "$U" -c "select count(*) from orch.messages where status='accepted'")
    [ "$left" = 0 ] && break
  done
  t1=$(date +%s.%N); r1=$(psql -Atq "$U" -c "select pg_current_wal_lsn()")
  rwal=$(psql -Atq "$U" -c "select round(pg_wal_lsn_diff('$r1','$r0')/$pending0)")
  rows=$(psql -Atq "$U" -c "select (select count(*) from orch.messages) || ' messages, ' || (select count(*) from orch.message_status_history) || ' history rows, ' || coalesce((select count(*)::text from orch.outbox),'no') || ' outbox rows'" 2>/dev/null || psql -Atq "$U" -c "select (select count(*) from orch.messages) || ' messages, ' || (select count(*) from orch.message_status_history) || ' history rows, no outbox table'")
  size=$(psql -Atq "$U" -c "select pg_size_pretty(sum(pg_total_relation_size(c.oid))) from pg_class c join pg_namespace n on n.oid=c.relnamespace where n.nspname='orch' and c.relkind='r'")
  echo "| $shape | $tps | $lat | $wal | $rwal | $(python3 -c "print(round(($t1-$t0)*1e6/$pending0))") | $rows | $size | $(cut -d' ' -f1-3 /proc/loadavg) |"
  psql -q "$BASE/orch_test" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done
