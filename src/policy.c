/*
 * policy.c -- the SQL of one policy. Identifiers come from the catalog,
 * quoted by the server (policy_describe_sql); every value is a parameter.
 * "Due", "held", "exempt" and "kept because referenced" are each written once
 * here and used by the daemon's statements and by retentionctl's, so that
 * what `explain` says is what the daemon does.
 */
#include "policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "util.h"

/*
 * An unqualified table name is looked up in the schema named after the role,
 * then in public (PostgreSQL's default search_path): the sessions of the
 * daemon and retentionctl pin search_path to pg_catalog, so the role's own
 * setting is not what resolves it.
 */
#define RESOLVE_WHERE(schema, rel)                                                                                     \
	" c.relname = " rel " AND c.relkind IN ('r', 'p') AND CASE WHEN " schema " IS NULL"                            \
	" THEN n.nspname IN (current_user, 'public') ELSE n.nspname = " schema " END"
#define RESOLVE_ORDER " ORDER BY n.nspname = current_user DESC LIMIT 1"

/* A table, its partitions and the partitioned tables it is a partition of. */
#define FAMILY(rel)                                                                                                    \
	"SELECT " rel " UNION SELECT a.relid FROM pg_catalog.pg_partition_ancestors(" rel ") a"                        \
	" UNION SELECT d.relid FROM pg_catalog.pg_partition_tree(" rel ") d"

/*
 * What a policy's statements were built from, as one text: the triggers of
 * the watched tables W (the policy's table and every table its cascades
 * pass, with their partition families, and retention.holds), which include
 * one for every foreign key that refers to them; their partitions, names
 * (the statements name them, so a table renamed into place is another
 * table) and row-level security switches; table T's columns and rules. The
 * purge compares it with what it was when the policy was described, under
 * the table's lock: DDL that changes any of it cannot commit while the
 * purge runs, and DDL committed before is seen. Every lookup can use an
 * index of the catalog.
 */
#define FINGERPRINT(w, t)                                                                                                \
	"pg_catalog.md5(pg_catalog.concat("                                                                              \
	"(SELECT pg_catalog.string_agg(g.oid::text || ':' || g.tgrelid::text || ':' || g.tgenabled::text, ','"           \
	" ORDER BY g.oid) FROM pg_catalog.pg_trigger g WHERE g.tgrelid = ANY (" w ")),"                                  \
	" '|', (SELECT pg_catalog.string_agg(i.inhrelid::text || '<' || i.inhparent::text, ',' ORDER BY i.inhrelid,"     \
	" i.inhparent) FROM pg_catalog.pg_inherits i WHERE i.inhparent = ANY (" w ")),"                                  \
	" '|', (SELECT pg_catalog.string_agg(i.inhrelid::text || '<' || i.inhparent::text, ',' ORDER BY i.inhrelid,"     \
	" i.inhparent) FROM pg_catalog.pg_inherits i WHERE i.inhrelid = ANY (" w ")),"                                   \
	" '|', (SELECT pg_catalog.string_agg(c.oid::text || ':' || c.relnamespace::text || ':' || c.relname::text"       \
	" || ':' || c.relrowsecurity::text || c.relforcerowsecurity::text,"                                              \
	" ',' ORDER BY c.oid) FROM pg_catalog.pg_class c"                                                                \
	" WHERE c.oid = ANY (" w ")),"                                                                                   \
	" '|', (SELECT pg_catalog.string_agg(r.oid::text, ',' ORDER BY r.oid) FROM pg_catalog.pg_rewrite r"              \
	" WHERE r.ev_class = " t "),"                                                                                    \
	" '|', (SELECT pg_catalog.string_agg(a.attnum::text || ':' || a.attname::text || ':' || a.atttypid::text || ':'" \
	" || a.atttypmod::text || ':' || a.attnotnull::text, ',' ORDER BY a.attnum) FROM pg_catalog.pg_attribute a"      \
	" WHERE a.attrelid = " t " AND a.attnum > 0 AND NOT a.attisdropped)))"

/* How many tables deep cascades are followed; a longer one is an error. */
#define GUARD_DEPTH_S "6"

const char policy_resolve_table_sql[] =
	"SELECT c.oid::bigint, pg_catalog.format('%I.%I', n.nspname, c.relname)"
	"  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	" WHERE" RESOLVE_WHERE("$1::text", "$2") RESOLVE_ORDER;

/*
 * $1 table oid, $2 key columns, $3 clock columns, $4 subject, $5 exempt column, $6 set_null
 * columns, $7 set columns, $8 action, $9-$13 every configured policy's name,
 * schema, relation, key columns (as a text[] literal) and subject, $14 this policy's name, $15 its set values,
 * $16 its clock_unit (NULL: none), $17 its retain_column (NULL: none).
 * -> (kind, sort, c1 .. c9); kinds: watch, column, sibling, guard, error, warning.
 */
/* The statement is laid out as SQL, not as C. */
/* clang-format off */
/* A column's type modifier, or for a domain column (which has none) the domain's own. */
/* The base types of the columns whose values statements read from text, or show as text. */
#define UNSAFE_TYPES                                                                                                   \
	"(SELECT CASE c.role WHEN 'set' THEN 'anonymized' ELSE c.role END, pg_catalog.quote_ident(c.name), bc.base_typ"    \
	"   FROM col c JOIN bottom bc ON bc.typ = c.atttypid WHERE c.role IN ('key', 'subject', 'exempt', 'set')"         \
	" UNION SELECT 'key', pg_catalog.quote_ident(s.kname), bk.base_typ FROM sib s JOIN bottom bk ON bk.typ = s.ktyp"  \
	" UNION SELECT 'subject', pg_catalog.quote_ident(s.sname), bs.base_typ FROM sib s"                                \
	"   JOIN bottom bs ON bs.typ = s.styp) u(role, name, typ)"
#define EFFECTIVE_TYPMOD(atttypmod, bottom) "CASE WHEN " atttypmod " <> -1 THEN " atttypmod " ELSE " bottom ".mod END"

const char policy_describe_sql[] =
	"WITH RECURSIVE wanted(role, name, ord, value) AS ("
	"    VALUES ('subject', $4::text, 0::bigint, NULL::text), ('exempt', $5::text, 0, NULL), ('retain', $17::text, 0, NULL)"
	"    UNION ALL SELECT 'key', s.name, s.ord, NULL FROM pg_catalog.unnest($2::text[]) WITH ORDINALITY s(name, ord)"
	"    UNION ALL SELECT 'clock', s.name, s.ord, NULL FROM pg_catalog.unnest($3::text[]) WITH ORDINALITY s(name, ord)"
	"    UNION ALL SELECT 'set_null', s.name, s.ord, NULL FROM pg_catalog.unnest($6::text[]) WITH ORDINALITY s(name, ord)"
	"    UNION ALL SELECT 'set', s.name, s.ord, s.value"
	"      FROM ROWS FROM (pg_catalog.unnest($7::text[]), pg_catalog.unnest($15::text[])) WITH ORDINALITY s(name, value, ord)"
	"), col AS ("
	"    SELECT w.role, w.name, w.ord, w.value, a.attnum, a.atttypid, a.atttypmod, a.attnotnull"
	"      FROM wanted w LEFT JOIN pg_catalog.pg_attribute a"
	"        ON a.attrelid = $1::oid AND a.attname = w.name AND a.attnum > 0 AND NOT a.attisdropped"
	"     WHERE w.name IS NOT NULL"
	"), conf AS ("
	"    SELECT p.name, p.key, p.subject, p.ord,"
	"           (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"             WHERE" RESOLVE_WHERE("p.nsp", "p.rel") RESOLVE_ORDER
	") AS oid"
	"      FROM ROWS FROM (pg_catalog.unnest($9::text[]), pg_catalog.unnest($10::text[]),"
	"           pg_catalog.unnest($11::text[]), pg_catalog.unnest($12::text[]), pg_catalog.unnest($13::text[]))"
	"           WITH ORDINALITY p(name, nsp, rel, key, subject, ord)"
	"), sib AS ("
	"    SELECT p.name, p.ord, k.ord AS kord, ka.attname AS kname, ka.atttypid AS ktyp, ka.atttypmod AS kmod,"
	"           sa.attname AS sname, sa.atttypid AS styp, sa.atttypmod AS smod"
	"      FROM conf p"
	"      CROSS JOIN LATERAL pg_catalog.unnest(p.key::text[]) WITH ORDINALITY k(name, ord)"
	"      LEFT JOIN pg_catalog.pg_attribute ka"
	"        ON ka.attrelid = $1::oid AND ka.attname = k.name AND ka.attnum > 0 AND NOT ka.attisdropped"
	"      LEFT JOIN pg_catalog.pg_attribute sa"
	"        ON sa.attrelid = $1::oid AND sa.attname = p.subject AND sa.attnum > 0 AND NOT sa.attisdropped"
	"     WHERE p.oid IN (" FAMILY("$1::oid") ")"
	"), types(typ) AS ("
	"    SELECT atttypid FROM col WHERE atttypid IS NOT NULL"
	"    UNION SELECT ktyp FROM sib WHERE ktyp IS NOT NULL UNION SELECT styp FROM sib WHERE styp IS NOT NULL"
	"), base(typ, cur, mod) AS ("
	"    SELECT typ, typ, -1 FROM types"
	"    UNION ALL SELECT b.typ, t.typbasetype, CASE WHEN b.mod <> -1 THEN b.mod ELSE t.typtypmod END"
	"      FROM base b JOIN pg_catalog.pg_type t ON t.oid = b.cur WHERE t.typbasetype <> 0"
	/*
	 * Values given as text are cast to a domain's base type, never to the
	 * domain: a domain's check is code of its owner, and would run with the
	 * daemon's role in statements outside any batch. The equality compares
	 * in the base type anyway.
	 */
	"), bottom AS ("
	"    SELECT b.typ, b.cur AS base_typ, b.mod FROM base b JOIN pg_catalog.pg_type ty"
	"        ON ty.oid = b.cur AND ty.typbasetype = 0"
	/* The equality of the type's default btree operator class, as the typcache would find it. */
	"), eq AS ("
	"    SELECT DISTINCT ON (b.typ) b.typ, pg_catalog.format('OPERATOR(%I.%s)', ns.nspname, op.oprname) AS eq"
	"      FROM base b JOIN pg_catalog.pg_type ty ON ty.oid = b.cur AND ty.typbasetype = 0"
	"      JOIN pg_catalog.pg_opclass oc ON oc.opcdefault AND oc.opcmethod = 403 AND ("
	"           oc.opcintype = ty.oid"
	"           OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast k WHERE k.castsource = ty.oid"
	"                       AND k.casttarget = oc.opcintype AND k.castmethod = 'b')"
	"           OR (oc.opcintype = 'anyenum'::regtype AND ty.typtype = 'e')"
	"           OR (oc.opcintype = 'anyarray'::regtype AND ty.typcategory = 'A'))"
	"      JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 3"
	"           AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype"
	"      JOIN pg_catalog.pg_operator op ON op.oid = ao.amopopr"
	"      JOIN pg_catalog.pg_namespace ns ON ns.oid = op.oprnamespace"
	"     ORDER BY b.typ, oc.opcintype = ty.oid DESC"
	/*
	 * A foreign key is declared on a partitioned table and covers its
	 * partitions, and a policy may govern either: what a policy governs is
	 * its table's whole partition family (ancestors and descendants), and a
	 * foreign key to any of a table's family may reach the table's rows.
	 */
	"), gov AS ("
	"    SELECT f.oid FROM conf p, LATERAL (SELECT p.oid UNION SELECT a.relid FROM"
	"           pg_catalog.pg_partition_ancestors(p.oid) a UNION SELECT d.relid FROM"
	"           pg_catalog.pg_partition_tree(p.oid) d) f(oid) WHERE f.oid IS NOT NULL"
	"), fk AS ("
	"    SELECT con.conname, con.conrelid, con.confrelid, con.confdeltype, con.conkey, con.confkey, con.conpfeqop,"
	"           con.conrelid IN (SELECT oid FROM gov) AS governed,"
	"           pg_catalog.format('%I.%I', n.nspname, c.relname) AS child"
	"      FROM pg_catalog.pg_constraint con"
	"      JOIN pg_catalog.pg_class c ON c.oid = con.conrelid"
	"      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"     WHERE con.contype = 'f' AND con.conparentid = 0 AND con.confrelid IN (" FAMILY(
	"$1::oid") ")"
	/*
	 * Every path of foreign keys by which deleting a record reaches other
	 * rows: the first hop from the table, the next ones only through ON
	 * DELETE CASCADE of tables no policy governs. A path that ends in a row
	 * a policy governs, or in a key that restricts the delete, keeps the
	 * record; its SQL joins the path from row t.
	 */
	"), path(rel, governed, action, conname, depth, joins, cond, names, visited, read_rels, read_cols) AS ("
	"    SELECT fk.conrelid, fk.governed, fk.confdeltype, fk.conname, 1, pg_catalog.format('%s c1', fk.child),"
	"           (SELECT pg_catalog.string_agg(pg_catalog.format('t.%I OPERATOR(%I.%s) c1.%I',"
	"                   pa.attname, opn.nspname, op.oprname, ca.attname), ' AND ' ORDER BY k.i)"
	"              FROM ROWS FROM (pg_catalog.unnest(fk.conkey), pg_catalog.unnest(fk.confkey),"
	"                   pg_catalog.unnest(fk.conpfeqop)) WITH ORDINALITY k(ck, pk, op, i)"
	"              JOIN pg_catalog.pg_attribute ca ON ca.attrelid = fk.conrelid AND ca.attnum = k.ck"
	"              JOIN pg_catalog.pg_attribute pa ON pa.attrelid = fk.confrelid AND pa.attnum = k.pk"
	"              JOIN pg_catalog.pg_operator op ON op.oid = k.op"
	"              JOIN pg_catalog.pg_namespace opn ON opn.oid = op.oprnamespace),"
	"           fk.child, ARRAY[$1::oid, fk.conrelid],"
	"           pg_catalog.array_fill(fk.conrelid, ARRAY[pg_catalog.cardinality(fk.conkey)]),"
	"           (SELECT pg_catalog.array_agg(a.attname) FROM pg_catalog.unnest(fk.conkey) k"
	"              JOIN pg_catalog.pg_attribute a ON a.attrelid = fk.conrelid AND a.attnum = k)"
	"      FROM fk WHERE $8 = 'delete'"
	"    UNION ALL"
	"    SELECT con.conrelid, con.conrelid IN (SELECT oid FROM gov), con.confdeltype,"
	"           con.conname, p.depth + 1,"
	"           p.joins || pg_catalog.format(' JOIN %I.%I c%s ON ', n.nspname, c.relname, p.depth + 1)"
	"           || (SELECT pg_catalog.string_agg(pg_catalog.format('c%s.%I OPERATOR(%I.%s) c%s.%I', p.depth,"
	"                      pa.attname, opn.nspname, op.oprname, p.depth + 1, ca.attname), ' AND ' ORDER BY k.i)"
	"                 FROM ROWS FROM (pg_catalog.unnest(con.conkey), pg_catalog.unnest(con.confkey),"
	"                      pg_catalog.unnest(con.conpfeqop)) WITH ORDINALITY k(ck, pk, op, i)"
	"                 JOIN pg_catalog.pg_attribute ca ON ca.attrelid = con.conrelid AND ca.attnum = k.ck"
	"                 JOIN pg_catalog.pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = k.pk"
	"                 JOIN pg_catalog.pg_operator op ON op.oid = k.op"
	"                 JOIN pg_catalog.pg_namespace opn ON opn.oid = op.oprnamespace),"
	"           p.cond, p.names || pg_catalog.format(' through %s', pg_catalog.format('%I.%I', n.nspname, c.relname)),"
	"           p.visited || con.conrelid,"
	"           p.read_rels || pg_catalog.array_fill(con.conrelid, ARRAY[pg_catalog.cardinality(con.conkey)])"
	"           || pg_catalog.array_fill(con.confrelid, ARRAY[pg_catalog.cardinality(con.confkey)]),"
	"           p.read_cols || (SELECT pg_catalog.array_agg(a.attname) FROM pg_catalog.unnest(con.conkey) k"
	"                            JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k)"
	"           || (SELECT pg_catalog.array_agg(a.attname) FROM pg_catalog.unnest(con.confkey) k"
	"                JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k)"
	"      FROM path p JOIN pg_catalog.pg_constraint con ON con.contype = 'f' AND con.conparentid = 0"
	"           AND con.confrelid IN (" FAMILY(
	"p.rel") ")"
	"      JOIN pg_catalog.pg_class c ON c.oid = con.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
					    /* A governed table ends a path, so it may be one already passed: the policy's own table, in a cycle. */
	"     WHERE NOT p.governed AND p.action = 'c' AND p.depth < " GUARD_DEPTH_S
	"       AND (con.conrelid IN (SELECT oid FROM gov) OR NOT con.conrelid = ANY (p.visited))"
	"), guard AS ("
	"    SELECT p.*, (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c"
	"                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p.rel) AS target,"
	"           EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_index i ON i.indrelid = con.conrelid"
	"                    WHERE con.conname = p.conname AND con.conrelid = p.rel"
	"                      AND (i.indkey::int2[])[0:pg_catalog.cardinality(con.conkey) - 1] @> con.conkey"
	"                      AND (i.indkey::int2[])[0:pg_catalog.cardinality(con.conkey) - 1] <@ con.conkey) AS indexed"
	"      FROM path p WHERE (p.governed OR p.action IN ('a', 'r')) AND p.cond IS NOT NULL"
	"), watched AS ("
	"    SELECT pg_catalog.array_agg(DISTINCT f.oid ORDER BY f.oid) AS w"
	"      FROM (SELECT $1::oid AS rel UNION SELECT rel FROM path) r, LATERAL (" FAMILY("r.rel") ""
	"           UNION SELECT pg_catalog.to_regclass('retention.holds')::oid) f(oid)"
	")"
	" SELECT 'watch', 0, " FINGERPRINT("(SELECT w FROM watched)::pg_catalog.oid[]", "$1::oid") ", (SELECT w FROM watched)::text,"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	" UNION ALL"
	" SELECT 'column', c.ord, c.role, pg_catalog.quote_ident(c.name),"
	"        pg_catalog.format_type(bc.base_typ, " EFFECTIVE_TYPMOD("c.atttypmod", "bc") "),"
	"        e.eq, pg_catalog.format_type(c.atttypid, NULL), NULL, NULL, " EFFECTIVE_TYPMOD("c.atttypmod", "bc") "::text, NULL"
	"   FROM col c LEFT JOIN eq e ON e.typ = c.atttypid LEFT JOIN bottom bc ON bc.typ = c.atttypid"
	"  WHERE c.attnum IS NOT NULL"
	" UNION ALL"
	/* One row per key column, in order: a composite key's columns follow each other. */
	" SELECT 'sibling', ((s.name <> $14)::int * 1000000 + s.ord) * 10 + s.kord, s.name, pg_catalog.quote_ident(s.kname),"
	"        pg_catalog.format_type(bk.base_typ, " EFFECTIVE_TYPMOD("s.kmod", "bk") "), ek.eq,"
	"        pg_catalog.quote_ident(s.sname), pg_catalog.format_type(bs.base_typ, " EFFECTIVE_TYPMOD("s.smod", "bs") "),"
	"        es.eq, " EFFECTIVE_TYPMOD("s.kmod", "bk") "::text, " EFFECTIVE_TYPMOD("s.smod", "bs") "::text"
	"   FROM sib s LEFT JOIN eq ek ON ek.typ = s.ktyp LEFT JOIN eq es ON es.typ = s.styp"
	"   LEFT JOIN bottom bk ON bk.typ = s.ktyp LEFT JOIN bottom bs ON bs.typ = s.styp"
	" UNION ALL"
					    /* A row of the policy's own table at a path's end keeps others, never itself. */
	" SELECT 'guard', 0, pg_catalog.format('NOT EXISTS (SELECT 1 FROM %s WHERE %s%s)', g.joins, g.cond,"
	"        CASE WHEN g.rel IN (" FAMILY(
	"$1::oid") ") THEN pg_catalog.format(' AND (c%s.tableoid"
	" OPERATOR(pg_catalog.<>) t.tableoid OR c%s.ctid OPERATOR(pg_catalog.<>) t.ctid)', g.depth, g.depth) END),"
	"        pg_catalog.format('referenced by %s (foreign key %I%s)', g.names, g.conname,"
	"                          CASE WHEN g.governed THEN ', whose rows a policy keeps' ELSE '' END),"
	"        g.target, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM guard g"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('%s column %s does not exist',"
	"        CASE c.role WHEN 'exempt' THEN 'exempt.column' WHEN 'set' THEN 'anonymized' WHEN 'retain' THEN 'retain_column'"
	"                    WHEN 'set_null' THEN 'anonymized' ELSE c.role END, pg_catalog.quote_ident(c.name)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.attnum IS NULL"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('%s column %s is of type %s, which has no equality operator%s',"
	"        CASE c.role WHEN 'set' THEN 'anonymized' ELSE c.role END, pg_catalog.quote_ident(c.name),"
	"        pg_catalog.format_type(c.atttypid, NULL), CASE c.role WHEN 'set' THEN ' of a btree operator class: a"
	" row anonymized with its value cannot be told from one still to anonymize (set_null it instead)' ELSE '' END),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c LEFT JOIN eq e ON e.typ = c.atttypid"
	"  WHERE c.attnum IS NOT NULL AND e.eq IS NULL AND c.role IN ('key', 'subject', 'exempt', 'set')"
	" UNION ALL"
	/*
	 * Values given as text are cast to a column's (base) type in the
	 * statements: a cast from text that a user defined would run that
	 * user's code with the daemon's role, and with the role of whoever runs
	 * retentionctl.
	 */
	" SELECT 'unsafe', 0, pg_catalog.format('%s column %s is of type %s, whose cast %s %s runs %s, a function a user"
	" defined: the daemon and retentionctl would run it with their own roles (DROP CAST, or use a type without one)',"
	"        u.role, u.name, pg_catalog.format_type(u.typ, NULL),"
	"        CASE WHEN k.casttarget = u.typ THEN 'from' ELSE 'to' END, 'text',"
	"        k.castfunc::pg_catalog.regprocedure), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM " UNSAFE_TYPES " JOIN pg_catalog.pg_cast k ON k.castfunc <> 0"
	"    AND ((k.casttarget = u.typ AND k.castsource = 'text'::pg_catalog.regtype)"
	"      OR (k.castsource = u.typ AND k.casttarget = 'text'::pg_catalog.regtype))"
	"   JOIN pg_catalog.pg_proc f ON f.oid = k.castfunc"
	"  WHERE f.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace"
	" UNION ALL"
	/* An array's input reads each element as its type: a domain's, with the domain's checks. */
	" SELECT 'unsafe', 0, pg_catalog.format('%s column %s is of type %s, an array of domain %s, whose checks are code of"
	" its owner: the daemon and retentionctl would run them with their own roles (use the domain''s base type)',"
	"        u.role, u.name, pg_catalog.format_type(u.typ, NULL), pg_catalog.format_type(at.typelem, NULL)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM " UNSAFE_TYPES " JOIN pg_catalog.pg_type at ON at.oid = u.typ AND at.typelem <> 0"
	"   JOIN pg_catalog.pg_type et ON et.oid = at.typelem AND et.typtype = 'd'"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('anonymized column %s is set to %L, which changes with time: a row"
	" anonymized with it would never match it again, and be anonymized at every batch', pg_catalog.quote_ident(c.name),"
	"        c.value), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c JOIN bottom bc ON bc.typ = c.atttypid JOIN pg_catalog.pg_type bt ON bt.oid = bc.base_typ"
	"  WHERE c.role = 'set' AND (CASE WHEN bt.typelem <> 0 AND bt.typcategory = 'A' THEN bt.typelem ELSE bt.oid END)"
	"        IN ('date'::pg_catalog.regtype, 'timestamp'::pg_catalog.regtype, 'timestamptz'::pg_catalog.regtype,"
	"            'time'::pg_catalog.regtype, 'timetz'::pg_catalog.regtype)"
	"    AND c.value ~* '(^|[^a-z])(now|today|tomorrow|yesterday)([^a-z]|$)'"
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('anonymized column %s is set to %L, which has no UTC offset: it is read"
	" in database.time_zone, and a change of zone makes every row anonymized with it due again (write the offset)',"
	"        pg_catalog.quote_ident(c.name), c.value), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c JOIN bottom bc ON bc.typ = c.atttypid"
	"  WHERE c.role = 'set' AND bc.base_typ IN ('timestamptz'::pg_catalog.regtype, 'timetz'::pg_catalog.regtype)"
	"    AND c.value !~* '(z|utc|gmt|[+-][0-9]{1,2}(:?[0-9]{2})?|infinity|epoch|[a-z]+/[a-z_]+)[[:space:]]*$'"
	" UNION ALL"
	/* Values given as text are cast to the base type: an array's would be an array of arrays. */
	" SELECT 'error', 0, pg_catalog.format('%s column %s is of type %s, an array, which a held or exempt value"
	" cannot be compared with', c.role, pg_catalog.quote_ident(c.name), pg_catalog.format_type(c.atttypid, NULL)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c JOIN bottom bc ON bc.typ = c.atttypid JOIN pg_catalog.pg_type bt ON bt.oid = bc.base_typ"
	"  WHERE c.attnum IS NOT NULL AND c.role IN ('key', 'subject', 'exempt') AND bt.typcategory = 'A'"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('clock column %s is %s: a clock is a timestamp with or without time zone,"
	" a date, or with clock_unit an integer count of seconds, milliseconds or microseconds since the Unix epoch',"
	"        pg_catalog.quote_ident(c.name), pg_catalog.format_type(c.atttypid, NULL)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'clock' AND c.attnum IS NOT NULL"
	"    AND c.atttypid NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype, 'int2'::regtype,"
	"                           'int4'::regtype, 'int8'::regtype)"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('clock column %s is %s: clock_unit says what it counts since the Unix"
	" epoch (\"seconds\", \"milliseconds\" or \"microseconds\")',"
	"        pg_catalog.quote_ident(c.name), pg_catalog.format_type(c.atttypid, NULL)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'clock' AND $16::text IS NULL"
	"    AND c.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('clock_unit is %s, but clock column %s is %s, not an integer', $16::text,"
	"        pg_catalog.quote_ident(c.name), pg_catalog.format_type(c.atttypid, NULL)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'clock' AND c.attnum IS NOT NULL AND $16::text IS NOT NULL"
	"    AND c.atttypid NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)"
	" UNION ALL"
	/* A record's own duration: an interval, or with an integer clock an integer of its unit. */
	" SELECT 'error', 0, pg_catalog.format('retain_column %s is %s: a record''s duration is an interval, or, with"
	" an integer clock and its clock_unit, an integer count of that unit', pg_catalog.quote_ident(c.name),"
	"        pg_catalog.format_type(c.atttypid, NULL)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c JOIN bottom bc ON bc.typ = c.atttypid WHERE c.role = 'retain'"
	"    AND NOT (bc.base_typ = 'interval'::regtype OR ($16::text IS NOT NULL"
	"             AND bc.base_typ IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)))"
	" UNION ALL"
	/* The next due record is the first by clock of each duration: an index on both finds each at once. */
	" SELECT 'warning', 0, pg_catalog.format('no index on (%s, %s): the next due record is looked for in every"
	" record with a duration of its own (as the table''s owner: CREATE INDEX ON %s (%s, %s))',"
	"        pg_catalog.quote_ident(c.name), x.expr, $1::oid::regclass, pg_catalog.quote_ident(c.name),"
	"        CASE WHEN pg_catalog.cardinality($3::text[]) > 1 THEN '(' || x.expr || ')' ELSE x.expr END),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c, (SELECT CASE WHEN pg_catalog.count(*) = 1 THEN pg_catalog.min(pg_catalog.quote_ident(k.name))"
	"                ELSE 'COALESCE(' || pg_catalog.string_agg(pg_catalog.quote_ident(k.name), ', ' ORDER BY k.ord)"
	"                || ')' END AS expr FROM col k WHERE k.role = 'clock' AND k.attnum IS NOT NULL) x"
	"  WHERE c.role = 'retain' AND c.attnum IS NOT NULL AND NOT EXISTS ("
	"       SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = $1::oid AND i.indpred IS NULL"
	"          AND i.indkey[0] = c.attnum AND pg_catalog.pg_get_indexdef(i.indexrelid, 2, false) = x.expr)"
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('clock column %s is timestamp without time zone:"
	" read in database.time_zone', pg_catalog.quote_ident(c.name)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'clock' AND c.atttypid = 'timestamp'::regtype AND c.ord = 1"
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('clock column %s is a date: a record''s clock is the midnight that"
	" starts it in database.time_zone', pg_catalog.quote_ident(c.name)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'clock' AND c.atttypid = 'date'::regtype AND c.ord = 1"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('key column %s may be NULL: a record needs a key"
	" (ALTER COLUMN ... SET NOT NULL)', pg_catalog.quote_ident(c.name)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'key' AND c.attnum IS NOT NULL AND NOT c.attnotnull"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('anonymized column %s is NOT NULL: set_null cannot clear it',"
	"        pg_catalog.quote_ident(c.name)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'set_null' AND c.attnotnull"
	" UNION ALL"
	" SELECT 'warning', 0, 'the table has inheritance children: their rows are purged too, and the key is not"
	" unique across them', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"  WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
	"                 WHERE i.inhparent = $1::oid AND NOT c.relispartition)"
	" UNION ALL"
	/* A composite key's index is on exactly its columns, in any order: fewer would make a part of it unique. */
	" SELECT 'error', 0, CASE WHEN k.n = 1 THEN pg_catalog.format('key column %s has no unique index or primary key"
	" of its own', k.names) ELSE pg_catalog.format('key columns %s have no unique index or primary key on exactly"
	" them', k.names) END, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM (SELECT pg_catalog.count(*) AS n, pg_catalog.array_agg(c.attnum) AS attnums,"
	"                pg_catalog.string_agg(pg_catalog.quote_ident(c.name), ', ' ORDER BY c.ord) AS names"
	"           FROM col c WHERE c.role = 'key' AND c.attnum IS NOT NULL) k"
	"  WHERE k.n = pg_catalog.cardinality($2::text[]) AND NOT EXISTS ("
	"       SELECT 1 FROM pg_catalog.pg_index i"
	"        WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL AND i.indnkeyatts = k.n"
	"          AND (i.indkey::int2[])[0:k.n - 1] @> k.attnums AND (i.indkey::int2[])[0:k.n - 1] <@ k.attnums)"
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('no index leads with clock column %s: every due query scans the table',"
	"        pg_catalog.quote_ident(c.name)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'clock' AND c.attnum IS NOT NULL AND pg_catalog.cardinality($3::text[]) = 1"
	"    AND NOT EXISTS ("
	"       SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = $1::oid AND i.indkey[0] = c.attnum)"
	" UNION ALL"
	/* A clock of several columns is their COALESCE, which only an index on that expression serves. */
	" SELECT 'warning', 0, pg_catalog.format('no index leads with %s, the clock: every due query scans the table"
	" (as the table''s owner: CREATE INDEX ON %s ((%s)))', x.expr, $1::oid::regclass, x.expr),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM (SELECT 'COALESCE(' || pg_catalog.string_agg(pg_catalog.quote_ident(c.name), ', ' ORDER BY c.ord) || ')'"
	"           AS expr FROM col c WHERE c.role = 'clock' AND c.attnum IS NOT NULL) x"
	"  WHERE pg_catalog.cardinality($3::text[]) > 1 AND NOT EXISTS ("
	"       SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = $1::oid"
	"          AND pg_catalog.pg_get_indexdef(i.indexrelid, 1, false) = x.expr)"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('the clock columns %s are of types %s: the clock is the first that is not"
	" NULL, and they must be of one type', pg_catalog.string_agg(pg_catalog.quote_ident(c.name), ', ' ORDER BY c.ord),"
	"        pg_catalog.string_agg(pg_catalog.format_type(c.atttypid, NULL), ', ' ORDER BY c.ord)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'clock' AND c.attnum IS NOT NULL"
	" HAVING pg_catalog.count(DISTINCT c.atttypid) > 1"
	" UNION ALL"
	/* With set_null columns only, the daemon's "still to anonymize" needs no parameter: a partial index serves it. */
	" SELECT 'warning', 0, pg_catalog.format('anonymized rows keep their clock, and every due query passes over them"
	" in clock order: an index that leaves them out keeps it short (as the table''s owner: CREATE INDEX ON %s (%I)"
	" WHERE %s)', $1::oid::regclass, c.name, (SELECT pg_catalog.string_agg(pg_catalog.format('%I IS NOT NULL', s.n),"
	" ' OR ' ORDER BY s.ord) FROM pg_catalog.unnest($6::text[]) WITH ORDINALITY s(n, ord))),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE $8 = 'anonymize' AND c.role = 'clock' AND c.attnum IS NOT NULL"
	"    AND pg_catalog.cardinality($3::text[]) = 1"
	"    AND pg_catalog.cardinality($7::text[]) = 0 AND NOT EXISTS ("
	"       SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = $1::oid AND i.indkey[0] = c.attnum"
	"          AND i.indpred IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest($6::text[]) s(n)"
	"              WHERE pg_catalog.strpos(pg_catalog.pg_get_expr(i.indpred, i.indrelid),"
	"                                      pg_catalog.quote_ident(s.n) || ' IS NOT NULL') = 0))"
	"    AND NOT c.name = ANY ($6::text[])"
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('no trigger calls retention.notify_clock() on INSERT: a new record due"
	" before the next one known waits up to resync_interval (as the table''s owner: CREATE TRIGGER retention_notify"
	" AFTER INSERT OR UPDATE OF %1$s ON %2$s FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock())',"
	/* Anonymized columns too: personal data written back into an anonymized row makes it due again. */
	"        (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.name), ', ' ORDER BY a.role <> 'clock', a.ord)"
	"           FROM col a WHERE a.attnum IS NOT NULL AND (a.role IN ('clock', 'retain')"
	"             OR ($8 = 'anonymize' AND a.role IN ('set_null', 'set')))),"
	"        $1::oid::regclass), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c WHERE c.role = 'clock' AND c.attnum IS NOT NULL AND c.ord = 1"
	"    AND pg_catalog.to_regproc('retention.notify_clock') IS NOT NULL AND NOT EXISTS ("
	"       SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = $1::oid AND t.tgenabled <> 'D'"
	"          AND t.tgtype::int & 4 <> 0 AND t.tgfoid = pg_catalog.to_regproc('retention.notify_clock'))"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('role %s lacks %s on the table', pg_catalog.quote_ident(current_user), priv),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM pg_catalog.unnest(CASE WHEN $8 = 'anonymize' THEN ARRAY['SELECT', 'UPDATE']"
	"                               ELSE ARRAY['SELECT', 'DELETE'] END) AS priv"
	"  WHERE NOT pg_catalog.has_table_privilege($1::oid, priv)"
							       /* FOR UPDATE SKIP LOCKED needs UPDATE on at least one column. */
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('role %s lacks UPDATE on any column of the table (the purge locks rows:"
	" GRANT UPDATE (%s))', pg_catalog.quote_ident(current_user), pg_catalog.quote_ident(($2::text[])[1])),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"  WHERE $8 = 'delete' AND NOT pg_catalog.has_any_column_privilege($1::oid, 'UPDATE')"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('role %s lacks USAGE on schema %s', pg_catalog.quote_ident(current_user),"
	"        pg_catalog.quote_ident(n.nspname)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"  WHERE c.oid = $1::oid AND NOT pg_catalog.has_schema_privilege(n.oid, 'USAGE')"
	" UNION ALL"
	" SELECT 'error', 0, 'schema retention is not installed: run retentionctl migrate',"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"  WHERE pg_catalog.to_regclass('retention.audit_log') IS NULL"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('role %s may not INSERT into retention.audit_log',"
	"        pg_catalog.quote_ident(current_user)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"  WHERE pg_catalog.to_regclass('retention.audit_log') IS NOT NULL"
	"    AND NOT pg_catalog.has_table_privilege('retention.audit_log', 'INSERT')"
							       /* Triggers run with the daemon's privileges; rules make a data-modifying WITH fail. */
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('trigger %I runs on every purge with the rights of role %s, and"
	" may read no view or foreign table (the purge fails if it does)',"
	"        t.tgname, pg_catalog.quote_ident(current_user)), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM pg_catalog.pg_trigger t"
	"  WHERE t.tgrelid = $1::oid AND NOT t.tgisinternal"
	"    AND t.tgtype::int & CASE WHEN $8 = 'delete' THEN 8 ELSE 16 END <> 0"
	"    AND t.tgfoid IS DISTINCT FROM pg_catalog.to_regproc('retention.notify_clock')"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('rule %I on %s makes every purge fail (no rules in a data-modifying WITH)',"
	"        r.rulename, CASE r.ev_type WHEN '4' THEN 'DELETE' ELSE 'UPDATE' END),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM pg_catalog.pg_rewrite r"
	"  WHERE r.ev_class = $1::oid AND r.ev_type = CASE WHEN $8 = 'delete' THEN '4' ELSE '2' END"
	" UNION ALL"
							       /*
	 * Every table a purge reads must show the daemon's role all its rows: a
	 * record it may not see is never purged, a referencing row or a hold it
	 * may not see does not keep the record.
	 */
	" SELECT 'error', 0, pg_catalog.format('row-level security applies to role %s on the table: records it may not see"
	" are never purged (ALTER TABLE ... DISABLE ROW LEVEL SECURITY)', pg_catalog.quote_ident(current_user)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"  WHERE pg_catalog.row_security_active($1::oid)"
	" UNION ALL"
	" SELECT DISTINCT 'error', 0, pg_catalog.format('row-level security applies to role %s on %s, which the purge"
	" reads to tell whether a record is still referenced: rows it may not see would not keep their records',"
	"        pg_catalog.quote_ident(current_user), r.rel::regclass), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM guard g, pg_catalog.unnest(g.read_rels) r(rel)"
	"  WHERE r.rel <> $1::oid AND pg_catalog.row_security_active(r.rel)"
	" UNION ALL"
	" SELECT 'error', 0, pg_catalog.format('row-level security applies to role %s on retention.holds: holds it may"
	" not see would not protect their records', pg_catalog.quote_ident(current_user)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"  WHERE pg_catalog.row_security_active(pg_catalog.to_regclass('retention.holds'))"
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('deleting a record also %s rows of %s (foreign key %I): no policy governs"
	" them, so they are not audited', CASE g.confdeltype WHEN 'c' THEN 'deletes' ELSE 'changes' END, g.child, g.conname),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM fk g WHERE $8 = 'delete' AND NOT g.governed AND g.confdeltype IN ('c', 'n', 'd')"
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('a record referenced by %s (foreign key %I%s) is kept until those rows"
	" go', g.names, g.conname, CASE WHEN g.governed THEN ', whose rows a policy keeps' ELSE '' END),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM guard g"
	" UNION ALL"
	" SELECT DISTINCT 'error', 0, pg_catalog.format('deleting a record cascades through more than %s tables (%s, then"
	" foreign key %I of %s): retentiond does not follow it further, so it cannot tell what a purge would reach',"
	"        " GUARD_DEPTH_S
	", p.names, con.conname, con.conrelid::regclass), NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
	"        NULL"
	"   FROM path p JOIN pg_catalog.pg_constraint con ON con.contype = 'f' AND con.conparentid = 0"
	"        AND con.confrelid IN (" FAMILY(
	"p.rel") ")"
	"  WHERE p.depth = " GUARD_DEPTH_S
	" AND NOT p.governed AND p.action = 'c'"
	"    AND (con.conrelid IN (SELECT oid FROM gov) OR NOT con.conrelid = ANY (p.visited))"
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('foreign key %I of %s has no index on its columns: each check whether"
	" a record is referenced scans %s', g.conname, g.target, g.target), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM guard g WHERE NOT g.indexed"
										/* The purge reads those columns to tell whether a record is still referenced. */
	" UNION ALL"
	" SELECT DISTINCT 'error', 0, pg_catalog.format('role %s lacks SELECT on column %I of %s: the purge reads it to tell"
	" whether a record is still referenced (GRANT SELECT (%I) ON %s TO %s)', pg_catalog.quote_ident(current_user),"
	"        r.col, r.rel::regclass, r.col, r.rel::regclass, pg_catalog.quote_ident(current_user)),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM guard g, ROWS FROM (pg_catalog.unnest(g.read_rels), pg_catalog.unnest(g.read_cols)) r(rel, col)"
	"  WHERE NOT pg_catalog.has_column_privilege(r.rel, r.col, 'SELECT')"
	" UNION ALL"
	" SELECT 'warning', 0, pg_catalog.format('column %s is referenced by foreign key %I of %I.%I: anonymizing it"
	" changes or breaks those references', pg_catalog.quote_ident(c.name), con.conname, n.nspname, t.relname),"
	"        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	"   FROM col c JOIN pg_catalog.pg_constraint con ON con.contype = 'f' AND con.confrelid = $1::oid"
	"        AND con.conparentid = 0 AND c.attnum = ANY (con.confkey)"
	"   JOIN pg_catalog.pg_class t ON t.oid = con.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace"
	"  WHERE $8 = 'anonymize' AND c.role IN ('set', 'set_null')"
	" ORDER BY 1, 2";
/* clang-format on */

/* pg_type OIDs of the base parameters, in enum policy_param order. */
static const Oid base_param_types[POLICY_N_BASE_PARAMS] = {
	[POLICY_PARAM_NAME] = 25,            /* text */
	[POLICY_PARAM_RETAIN] = 1186,        /* interval */
	[POLICY_PARAM_SLACK] = 1186,         /* interval */
	[POLICY_PARAM_EXEMPT_VALUES] = 1009, /* text[] */
	[POLICY_PARAM_LIMIT] = 23,           /* integer */
	[POLICY_PARAM_SERVICE] = 25,
	[POLICY_PARAM_SOURCE] = 25,
	[POLICY_PARAM_TABLE] = 25,
	[POLICY_PARAM_ACTION] = 25,
	[POLICY_PARAM_INSTANCE] = 25,
	[POLICY_PARAM_SIBLINGS] = 1009,
	[POLICY_PARAM_SET_VALUES] = 1009,
};

/* The statement-specific parameters as the SQL names them. */
#define EXTRA_1 "$13"
#define EXTRA_2 "$14"
_Static_assert(POLICY_PARAM_EXTRA == 12, "EXTRA_1 and EXTRA_2 follow the base parameters");
#define SET_VALUES "$12"
_Static_assert(POLICY_PARAM_SET_VALUES == 11, "SET_VALUES names POLICY_PARAM_SET_VALUES");

void policy_slack(const struct duration *retain, bool clock_without_zone, char *buf, size_t size)
{
	/*
	 * clock + retain <= now is what "due" means, but only clock <= bound can
	 * use the clock index. Month arithmetic clamps to the month's end (up to
	 * 3 days) and a calendar day can be 23 or 25 hours, so the index bound
	 * is widened by that much and the exact test is applied on top. A clock
	 * without a zone is read in the session's zone, which around a DST change
	 * moves it by up to 2 hours against the raw column the index holds.
	 */
	int days = retain->months != 0 ? 4 : 0;
	int hours = (retain->months == 0 && retain->days != 0 ? 3 : 0) + (clock_without_zone ? 3 : 0);
	snprintf(buf, size, "%d days %d hours", days, hours);
}

char *policy_identity_values(const struct policy *p, char *const *types, char *const *values, size_t n)
{
	char **mine = xcalloc(n + 1, sizeof(char *)), *out = NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (p->identity && strcmp(p->identity, types[i]) == 0)
			mine[k++] = values[i];
	if (k)
		out = policy_text_array(mine, k);
	free(mine);
	return out;
}

char *policy_text_array(char *const *values, size_t n)
{
	size_t cap = 3;
	char *out, *w;
	for (size_t i = 0; i < n; i++)
		cap += (values[i] ? strlen(values[i]) * 2 : 4) + 3;
	out = w = xmalloc(cap);
	*w++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*w++ = ',';
		if (values[i] == NULL) {
			memcpy(w, "NULL", 4);
			w += 4;
			continue;
		}
		*w++ = '"';
		for (const char *p = values[i]; *p; p++) {
			if (*p == '"' || *p == '\\')
				*w++ = '\\';
			*w++ = *p;
		}
		*w++ = '"';
	}
	*w++ = '}';
	*w = '\0';
	return out;
}

/* Every element of LITERAL; SQL NULLs as NULL pointers unless SKIP_NULLS. The array is NULL-terminated too. */
static char **text_array_parse(const char *literal, size_t *n, bool skip_nulls)
{
	size_t cap = 8;
	char **out = xcalloc(cap + 1, sizeof(char *));
	const char *p = literal;
	*n = 0;
	if (*p == '{')
		p++;
	while (*p && *p != '}') {
		bool quoted = *p == '"';
		const char *start = quoted ? ++p : p;
		size_t len = 0;
		char *v, *w;
		/* Measure first: an element is copied into exactly its own size. */
		for (const char *q = start; *q && (quoted ? *q != '"' : *q != ',' && *q != '}'); q++, len++)
			if (quoted && *q == '\\' && q[1])
				q++;
		v = w = xmalloc(len + 1);
		while (*p && (quoted ? *p != '"' : *p != ',' && *p != '}')) {
			if (quoted && *p == '\\' && p[1])
				p++;
			*w++ = *p++;
		}
		*w = '\0';
		if (quoted && *p == '"')
			p++;
		if (!quoted && strcmp(v, "NULL") == 0) {
			free(v);
			v = NULL;
		}
		if (v || !skip_nulls) {
			if (*n == cap) {
				cap *= 2;
				out = xrealloc(out, (cap + 1) * sizeof(char *));
			}
			out[(*n)++] = v;
			out[*n] = NULL;
		}
		if (*p == ',')
			p++;
	}
	return out;
}

char **policy_text_array_parse(const char *literal, size_t *n) { return text_array_parse(literal, n, true); }

char **policy_text_array_parse_all(const char *literal, size_t *n) { return text_array_parse(literal, n, false); }

void policy_text_array_free_n(char **values, size_t n)
{
	if (values == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(values[i]);
	free(values);
}

void policy_text_array_free(char **values)
{
	if (values == NULL)
		return;
	for (char **v = values; *v; v++)
		free(*v);
	free(values);
}

/* ---- the catalog's description ---- */

bool policy_resolve_params(const struct policy *p, char **schema, char **relname)
{
	const char *why;
	*schema = *relname = NULL;
	return config_split_table_name(p->table, schema, relname, &why);
}

int policy_describe_params(const struct config *cfg, const struct policy *p, long long oid, char **params)
{
	size_t n = cfg->n_policies;
	char **names = xcalloc(n + 1, sizeof(char *)), **schemas = xcalloc(n + 1, sizeof(char *));
	char **rels = xcalloc(n + 1, sizeof(char *)), **keys = xcalloc(n + 1, sizeof(char *));
	char **subjects = xcalloc(n + 1, sizeof(char *)), **set_columns = xcalloc(p->n_set + 1, sizeof(char *));
	char **set_values = xcalloc(p->n_set + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		const struct policy *o = &cfg->policies[i];
		names[i] = o->name;
		keys[i] = policy_text_array(o->keys, o->n_keys);
		subjects[i] = o->subject;
		/* The loader accepted the name, so this splits. */
		policy_resolve_params(o, &schemas[i], &rels[i]);
	}
	for (size_t i = 0; i < p->n_set; i++) {
		set_columns[i] = p->set[i].column;
		set_values[i] = p->set[i].value;
	}
	params[0] = xasprintf("%lld", oid);
	params[1] = policy_text_array(p->keys, p->n_keys);
	params[2] = policy_text_array(p->clocks, p->n_clocks);
	params[3] = p->subject ? xstrdup(p->subject) : NULL;
	params[4] = p->exempt_column ? xstrdup(p->exempt_column) : NULL;
	params[5] = policy_text_array(p->set_null, p->n_set_null);
	params[6] = policy_text_array(set_columns, p->n_set);
	params[7] = xstrdup(policy_action_name(p->action));
	params[8] = policy_text_array(names, n);
	params[9] = policy_text_array(schemas, n);
	params[10] = policy_text_array(rels, n);
	params[11] = policy_text_array(keys, n);
	params[12] = policy_text_array(subjects, n);
	params[13] = xstrdup(p->name);
	params[14] = policy_text_array(set_values, p->n_set);
	params[15] = p->clock_unit != POLICY_CLOCK_UNIT_NONE ? xstrdup(policy_clock_unit_name(p->clock_unit)) : NULL;
	params[16] = p->retain_column ? xstrdup(p->retain_column) : NULL;
	for (size_t i = 0; i < n; i++) {
		free(schemas[i]);
		free(rels[i]);
		free(keys[i]);
	}
	free(names);
	free(schemas);
	free(rels);
	free(keys);
	free(subjects);
	free(set_columns);
	free(set_values);
	return POLICY_DESCRIBE_N_PARAMS;
}

void policy_params_free(char **params, int n)
{
	for (int i = 0; i < n; i++)
		free(params[i]);
}

static char *value_or_null(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

static void column_set(struct policy_column *c, const PGresult *res, int row, int first, int typmod)
{
	c->quoted = value_or_null(res, row, first);
	c->type = value_or_null(res, row, first + 1);
	c->eq = value_or_null(res, row, first + 2);
	c->typmod = PQgetisnull(res, row, typmod) ? -1 : atoi(PQgetvalue(res, row, typmod));
}

static void column_free(struct policy_column *c)
{
	free(c->quoted);
	free(c->type);
	free(c->eq);
	memset(c, 0, sizeof(*c));
}

static void key_free(struct policy_key *k)
{
	for (size_t i = 0; i < k->n; i++)
		column_free(&k->columns[i]);
	free(k->columns);
	free(k->type);
	memset(k, 0, sizeof(*k));
}

static struct policy_column *key_add(struct policy_key *k)
{
	k->columns = xrealloc(k->columns, (k->n + 1) * sizeof(*k->columns));
	return &k->columns[k->n++];
}

/* Whether every column of K exists and compares: the statements can name and compare its records. */
static bool key_usable(const struct policy_key *k)
{
	if (k->n == 0)
		return false;
	for (size_t i = 0; i < k->n; i++)
		if (k->columns[i].quoted == NULL || k->columns[i].eq == NULL || k->columns[i].type == NULL)
			return false;
	return true;
}

/* K's retention.quarantine.key_type, once its columns are known. */
static void key_set_type(struct policy_key *k)
{
	size_t len = 3;
	if (!key_usable(k))
		return;
	if (k->n == 1) {
		k->type = xstrdup(k->columns[0].type);
		return;
	}
	for (size_t i = 0; i < k->n; i++)
		len += strlen(k->columns[i].type) + 2;
	k->type = xcalloc(len, 1);
	strcat(k->type, "(");
	for (size_t i = 0; i < k->n; i++) {
		if (i)
			strcat(k->type, ", ");
		strcat(k->type, k->columns[i].type);
	}
	strcat(k->type, ")");
}

static void push(char ***list, size_t *n, char *item)
{
	*list = xrealloc(*list, (*n + 1) * sizeof(**list));
	(*list)[(*n)++] = item;
}

enum {
	D_KIND,
	D_SORT,
	D_C1,
	D_C2,
	D_C3,
	D_C4,
	D_C5,
	D_C6,
	D_C7,
	D_C8,
	D_C9
};

/* The shape's retain column, whose base type BASE says what kind of duration it holds. */
static struct policy_column *retain_column_of(struct policy_shape *shape, const char *base)
{
	/* An interval with fields (interval day to second) is one too. */
	if (strncmp(base, "interval", 8) == 0)
		shape->retain_kind = POLICY_RETAIN_INTERVAL;
	else if (strcmp(base, "smallint") == 0 || strcmp(base, "integer") == 0 || strcmp(base, "bigint") == 0)
		shape->retain_kind = POLICY_RETAIN_COUNT;
	return &shape->retain;
}

/* TYPE as format_type spells it; the describe statement reports any other as an error. */
static enum policy_clock_kind clock_kind_of(const char *type)
{
	if (strcmp(type, "timestamp without time zone") == 0)
		return POLICY_CLOCK_TIMESTAMP;
	if (strcmp(type, "date") == 0)
		return POLICY_CLOCK_DATE;
	if (strcmp(type, "smallint") == 0 || strcmp(type, "integer") == 0 || strcmp(type, "bigint") == 0)
		return POLICY_CLOCK_EPOCH;
	return POLICY_CLOCK_TIMESTAMPTZ;
}

bool policy_clock_without_zone(const struct policy_shape *shape)
{
	return shape->clock_kind == POLICY_CLOCK_TIMESTAMP || shape->clock_kind == POLICY_CLOCK_DATE;
}

void policy_shape_parse(struct policy_shape *shape, const PGresult *res, long long oid, const char *table)
{
	memset(shape, 0, sizeof(*shape));
	shape->oid = oid;
	shape->table = xstrdup(table);
	for (int r = 0; r < PQntuples(res); r++) {
		const char *kind = PQgetvalue(res, r, D_KIND);
		if (strcmp(kind, "column") == 0) {
			const char *role = PQgetvalue(res, r, D_C1);
			struct policy_column *c = NULL;
			if (strcmp(role, "key") == 0)
				c = key_add(&shape->key);
			else if (strcmp(role, "subject") == 0)
				c = &shape->subject;
			else if (strcmp(role, "exempt") == 0)
				c = &shape->exempt;
			else if (strcmp(role, "retain") == 0)
				c = retain_column_of(shape, PQgetvalue(res, r, D_C3));
			if (strcmp(role, "clock") == 0) {
				/* The first clock column describes the clock's type; the others agree with it, or are errors. */
				push(&shape->clock_columns, &shape->n_clock_columns, xstrdup(PQgetvalue(res, r, D_C2)));
				if (shape->n_clock_columns == 1) {
					column_set(&shape->clock, res, r, D_C2, D_C8);
					shape->clock_kind = clock_kind_of(PQgetvalue(res, r, D_C5));
				}
			} else if (c) {
				column_set(c, res, r, D_C2, D_C8);
			} else if (strcmp(role, "set_null") == 0 || strcmp(role, "set") == 0) {
				bool is_set = role[3] == '\0';
				struct policy_column **list = is_set ? &shape->set : &shape->set_null;
				size_t *n = is_set ? &shape->n_set : &shape->n_set_null;
				*list = xrealloc(*list, (*n + 1) * sizeof(**list));
				column_set(&(*list)[(*n)++], res, r, D_C2, D_C8);
			}
		} else if (strcmp(kind, "sibling") == 0) {
			/* A row per key column: the columns of a composite key come one after another. */
			struct policy_sibling *s = shape->n_siblings ? &shape->siblings[shape->n_siblings - 1] : NULL;
			if (s == NULL || strcmp(s->name, PQgetvalue(res, r, D_C1)) != 0) {
				shape->siblings = xrealloc(shape->siblings, (shape->n_siblings + 1) * sizeof(*s));
				s = &shape->siblings[shape->n_siblings++];
				memset(s, 0, sizeof(*s));
				s->name = xstrdup(PQgetvalue(res, r, D_C1));
				column_set(&s->subject, res, r, D_C5, D_C9);
			}
			column_set(key_add(&s->key), res, r, D_C2, D_C8);
		} else if (strcmp(kind, "guard") == 0) {
			struct policy_guard *g;
			shape->guards = xrealloc(shape->guards, (shape->n_guards + 1) * sizeof(*g));
			g = &shape->guards[shape->n_guards++];
			g->sql = xstrdup(PQgetvalue(res, r, D_C1));
			g->what = xstrdup(PQgetvalue(res, r, D_C2));
			g->table = xstrdup(PQgetvalue(res, r, D_C3));
		} else if (strcmp(kind, "watch") == 0) {
			shape->fingerprint = xstrdup(PQgetvalue(res, r, D_C1));
			shape->watched = xstrdup(PQgetvalue(res, r, D_C2));
		} else if (strcmp(kind, "unsafe") == 0) {
			/* Refused by retentionctl too: the cast would run in every statement of the policy. */
			if (shape->unsafe == NULL)
				shape->unsafe = xstrdup(PQgetvalue(res, r, D_C1));
			push(&shape->errors, &shape->n_errors, xstrdup(PQgetvalue(res, r, D_C1)));
		} else if (strcmp(kind, "error") == 0) {
			push(&shape->errors, &shape->n_errors, xstrdup(PQgetvalue(res, r, D_C1)));
		} else if (strcmp(kind, "warning") == 0) {
			push(&shape->warnings, &shape->n_warnings, xstrdup(PQgetvalue(res, r, D_C1)));
		}
	}
	key_set_type(&shape->key);
	for (size_t i = 0; i < shape->n_siblings; i++)
		key_set_type(&shape->siblings[i].key);
}

void policy_shape_free(struct policy_shape *shape)
{
	free(shape->table);
	free(shape->fingerprint);
	free(shape->watched);
	free(shape->unsafe);
	key_free(&shape->key);
	column_free(&shape->clock);
	for (size_t i = 0; i < shape->n_clock_columns; i++)
		free(shape->clock_columns[i]);
	free(shape->clock_columns);
	column_free(&shape->subject);
	column_free(&shape->exempt);
	column_free(&shape->retain);
	for (size_t i = 0; i < shape->n_set_null; i++)
		column_free(&shape->set_null[i]);
	free(shape->set_null);
	for (size_t i = 0; i < shape->n_set; i++)
		column_free(&shape->set[i]);
	free(shape->set);
	for (size_t i = 0; i < shape->n_siblings; i++) {
		free(shape->siblings[i].name);
		key_free(&shape->siblings[i].key);
		column_free(&shape->siblings[i].subject);
	}
	free(shape->siblings);
	for (size_t i = 0; i < shape->n_guards; i++) {
		free(shape->guards[i].sql);
		free(shape->guards[i].what);
		free(shape->guards[i].table);
	}
	free(shape->guards);
	for (size_t i = 0; i < shape->n_errors; i++)
		free(shape->errors[i]);
	free(shape->errors);
	for (size_t i = 0; i < shape->n_warnings; i++)
		free(shape->warnings[i]);
	free(shape->warnings);
	memset(shape, 0, sizeof(*shape));
}

/* ---- building the statements ---- */

/* Appends to a growing string. */
struct sbuf {
	char *s;
	size_t len;
};

static void sb_add(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	char *piece;
	size_t n;
	va_start(ap, fmt);
	piece = xvasprintf(fmt, ap);
	va_end(ap);
	n = strlen(piece);
	b->s = xrealloc(b->s, b->len + n + 1);
	memcpy(b->s + b->len, piece, n + 1);
	b->len += n;
	free(piece);
}

/* What every predicate of one policy needs: its shape and how its clock reads. */
struct frame {
	const struct policy_shape *shape;
	const struct policy *policy;
	char *clock;                                /* the clock as the row holds it: t.c, or COALESCE(t.c, t.d) */
	char *clock_at;                             /* the clock as timestamptz */
	char *due_at;                               /* when row t falls due under this rule (due_at_with $2) */
	const struct policy_unapproved *unapproved; /* NULL: the rule is approved */
};

/* Row t's clock, as it holds it: its clock column, or the first of its clock columns that is not NULL. */
static char *clock_of_row(const struct policy_shape *s)
{
	struct sbuf b = {NULL, 0};
	if (s->n_clock_columns == 1)
		return xasprintf("t.%s", s->clock_columns[0]);
	sb_add(&b, "COALESCE(");
	for (size_t i = 0; i < s->n_clock_columns; i++)
		sb_add(&b, "%st.%s", i ? ", " : "", s->clock_columns[i]);
	sb_add(&b, ")");
	return b.s;
}

/* Of an integer clock: how many of its unit make a second. */
static const struct {
	long long per_second;
} epoch_units[] = {
	[POLICY_CLOCK_UNIT_SECONDS] = {1},
	[POLICY_CLOCK_UNIT_MILLISECONDS] = {1000},
	[POLICY_CLOCK_UNIT_MICROSECONDS] = {1000000},
};

/* The seconds since the epoch of the first timestamptz PostgreSQL holds. */
#define EPOCH_FIRST_SECOND (-210866803200LL)
/*
 * A clock at or after 291000-01-01 00:00 UTC reads as infinity, never due:
 * adding a retain (at most 1000 years of months, of days and of time each)
 * to a later one would pass the last timestamp PostgreSQL holds, and fail
 * the statement for every record of the policy. Its seconds since the epoch.
 */
#define CLOCK_NEVER_TEXT   "291000-01-01 00:00:00"
#define CLOCK_NEVER_SECOND 9120905856000LL
#define INT8_LAST          "9223372036854775807"

/* The first clock value, in the clock column's type, that reads as never due (CLOCK_NEVER_TEXT). */
static char *clock_never(const struct frame *f)
{
	switch (f->shape->clock_kind) {
	case POLICY_CLOCK_TIMESTAMPTZ:
		return xstrdup("'" CLOCK_NEVER_TEXT "+00'::timestamptz");
	case POLICY_CLOCK_TIMESTAMP:
		return xstrdup("'" CLOCK_NEVER_TEXT "'::timestamp");
	case POLICY_CLOCK_DATE:
		return xstrdup("'" CLOCK_NEVER_TEXT "'::date");
	case POLICY_CLOCK_EPOCH:
		break;
	}
	return xasprintf("%lld", CLOCK_NEVER_SECOND * epoch_units[f->policy->clock_unit].per_second);
}

/*
 * RAW, a value of the clock column (an SQL expression), as a timestamptz.
 * An integer clock is split into whole days and the rest of one, each
 * exact in an interval; a count before the first timestamp reads as
 * -infinity (long overdue), and a clock of any type from CLOCK_NEVER_TEXT
 * on as infinity, so that one row's value fails no statement.
 */
static char *clock_time_of(const struct frame *f, const char *raw)
{
	char *never = clock_never(f), *at, *out;
	long long per = epoch_units[f->policy->clock_unit].per_second;
	switch (f->shape->clock_kind) {
	case POLICY_CLOCK_TIMESTAMPTZ:
		at = xstrdup(raw);
		break;
	case POLICY_CLOCK_TIMESTAMP:
	case POLICY_CLOCK_DATE:
		/* Read in the session's zone (database.time_zone), in every predicate alike. */
		at = xasprintf("%s::timestamptz", raw);
		break;
	case POLICY_CLOCK_EPOCH:
	default:
		/* Whole days and what is left of one, each exact, on the epoch as a UTC wall clock: no zone moves it. */
		at = xasprintf("pg_catalog.timezone('UTC', '1970-01-01 00:00:00'::timestamp + pg_catalog.make_interval("
			       "days => (%s / %lld)::int4, secs => (%s %% %lld)::float8 / %lld))",
			       raw, 86400 * per, raw, 86400 * per, per);
		break;
	}
	if (f->shape->clock_kind == POLICY_CLOCK_EPOCH)
		out = xasprintf("CASE WHEN %s < %lld THEN '-infinity'::timestamptz WHEN %s >= %s THEN"
				" 'infinity'::timestamptz ELSE %s END",
				raw, EPOCH_FIRST_SECOND * per, raw, never, at);
	else
		out = xasprintf("CASE WHEN %s >= %s THEN 'infinity'::timestamptz ELSE %s END", raw, never, at);
	free(never);
	free(at);
	return out;
}

/*
 * The last value of the clock column at or before AT, a timestamptz
 * expression: the raw column is compared with it, computed once per
 * statement, so that a plain btree index on the clock serves the test.
 */
static char *clock_bound(const struct frame *f, const char *at)
{
	switch (f->shape->clock_kind) {
	case POLICY_CLOCK_TIMESTAMPTZ:
		return xasprintf("(%s)", at);
	case POLICY_CLOCK_TIMESTAMP:
		return xasprintf("(%s)::timestamp", at);
	case POLICY_CLOCK_DATE:
		return xasprintf("(%s)::date", at);
	case POLICY_CLOCK_EPOCH:
		break;
	}
	/* Exact in numeric; an infinite AT stops at the ends of bigint. */
	return xasprintf("LEAST(GREATEST(pg_catalog.floor(EXTRACT(epoch FROM (%s)) * %lld), -" INT8_LAST
			 " - 1), " INT8_LAST ")::int8",
			 at, epoch_units[f->policy->clock_unit].per_second);
}

/* RAW, a value of the clock column, later by INTERVAL (an SQL interval without months), in the column's type. */
static char *clock_plus(const struct frame *f, const char *raw, const char *interval)
{
	if (f->shape->clock_kind != POLICY_CLOCK_EPOCH)
		return xasprintf("(%s + %s)", raw, interval);
	return xasprintf("LEAST(%s::numeric + EXTRACT(epoch FROM %s) * %lld, " INT8_LAST ")::int8", raw, interval,
			 epoch_units[f->policy->clock_unit].per_second);
}

/* The widest index slack policy_slack gives any retain. */
#define SLACK_MAX "4 days 6 hours"

/*
 * A record's own duration (policies.retain_column) is read only within
 * 1000 years in each of an interval's fields, months, days and time, as
 * retain is: with more, the clock plus it could pass the last timestamp and
 * fail the statement for every record. A duration beyond is never due.
 */
#define RETAIN_FIELD_YEARS "1000"

/* The retain column's value RAW (an SQL expression) as an interval: a count is elapsed time, exact to the unit. */
static char *retain_interval_of(const struct frame *f, const char *raw)
{
	long long per = epoch_units[f->policy->clock_unit].per_second;
	if (f->shape->retain_kind == POLICY_RETAIN_INTERVAL)
		return xasprintf("(%s)::interval", raw);
	return xasprintf(
		"pg_catalog.make_interval(hours => ((%s) / %lld)::int4, secs => ((%s) %% %lld)::float8 / %lld)", raw,
		3600 * per, raw, 3600 * per, per);
}

/*
 * Whether the retain column's value RAW is one the statements read
 * (RETAIN_FIELD_YEARS); NULL for NULL. An interval whose fields differ in
 * sign ('-12 mon 400 days') is none either: it compares as one length and
 * adds to a clock as another, even a negative one, so neither the index
 * bounds nor "negative is none" would hold for it, and a clock near the
 * first timestamp minus its negative field fails the statement.
 */
static char *retain_in_bounds(const struct frame *f, const char *raw)
{
	if (f->shape->retain_kind == POLICY_RETAIN_INTERVAL) {
		char *months = xasprintf("(EXTRACT(year FROM %s) * 12 + EXTRACT(month FROM %s))", raw, raw);
		char *days = xasprintf("EXTRACT(day FROM %s)", raw);
		char *time = xasprintf(
			"(EXTRACT(hour FROM %s) * 3600 + EXTRACT(minute FROM %s) * 60 + EXTRACT(second FROM %s))", raw,
			raw, raw);
		char *out = xasprintf("(abs(EXTRACT(year FROM %s)) <= " RETAIN_FIELD_YEARS
				      " AND abs(%s) <= " RETAIN_FIELD_YEARS " * 366"
				      " AND abs(EXTRACT(hour FROM %s)) <= " RETAIN_FIELD_YEARS " * 8784"
				      " AND NOT ((%s > 0 OR %s > 0 OR %s > 0) AND (%s < 0 OR %s < 0 OR %s < 0)))",
				      raw, days, raw, months, days, time, months, days, time);
		free(months);
		free(days);
		free(time);
		return out;
	}
	return xasprintf("(%s <= " RETAIN_FIELD_YEARS "::int8 * 31622400 * %lld)", raw,
			 epoch_units[f->policy->clock_unit].per_second);
}

/*
 * When row t falls due: its clock plus DEFAULT_RETAIN (an SQL interval),
 * or plus its own duration where the retain column holds one; a negative
 * one is none (due at the clock), one out of bounds never due.
 */
static char *due_at_with(const struct frame *f, const char *default_retain)
{
	char *in_bounds, *own, *out, *r;
	if (f->policy->retain_column == NULL)
		return xasprintf("%s + %s", f->clock_at, default_retain);
	r = xasprintf("t.%s", f->shape->retain.quoted);
	in_bounds = retain_in_bounds(f, r);
	own = retain_interval_of(f, r);
	out = xasprintf("CASE WHEN %s IS NULL THEN %s + %s WHEN NOT %s THEN 'infinity'::timestamptz"
			" WHEN %s < %s THEN %s ELSE %s + %s END",
			r, f->clock_at, default_retain, in_bounds, r,
			f->shape->retain_kind == POLICY_RETAIN_INTERVAL ? "'0'::interval" : "0", f->clock_at,
			f->clock_at, own);
	free(r);
	free(in_bounds);
	free(own);
	return out;
}

/*
 * The shortest duration of the policy's records (AGGREGATE "min"), or the
 * longest ("max"), DEFAULT_RETAIN or a record's own within bounds, none
 * below zero: the index bound of a due test, or of a test that a record fell
 * due recently. One uncorrelated subquery; with an index on the retain
 * column, its first or last entry.
 */
static char *retain_bound(const struct frame *f, const char *aggregate, const char *default_retain)
{
	char *r = xasprintf("s.%s", f->shape->retain.quoted), *in_bounds = retain_in_bounds(f, r);
	char *value = xasprintf("GREATEST(pg_catalog.%s(%s), %s)", aggregate, r,
				f->shape->retain_kind == POLICY_RETAIN_INTERVAL ? "'0'::interval" : "0");
	char *own = retain_interval_of(f, value);
	char *out = xasprintf("%s(%s, (SELECT %s FROM %s s WHERE %s))",
			      strcmp(aggregate, "min") == 0 ? "LEAST" : "GREATEST", default_retain, own,
			      f->shape->table, in_bounds);
	free(r);
	free(in_bounds);
	free(value);
	free(own);
	return out;
}

/*
 * Row t stands anonymized: each set_null column NULL, each `set` column its
 * value (cast from text as the validate statement checks it can be). The row
 * itself says it, so the clock stays as the application wrote it and a
 * record is anonymized once. With set_null columns only, the predicate has
 * no parameter: a partial index on the clock WHERE any of them IS NOT NULL
 * serves the due queries of a generic plan.
 */
static void sb_anonymized(struct sbuf *b, const struct frame *f)
{
	const struct policy_shape *s = f->shape;
	const char *and = "";
	sb_add(b, "(");
	for (size_t i = 0; i < s->n_set_null; i++, and = " AND ")
		sb_add(b, "%st.%s IS NULL", and, s->set_null[i].quoted);
	/* In the type's own btree equality: box's `=`, say, compares areas, and would call any box anonymized. */
	for (size_t i = 0; i < s->n_set; i++, and = " AND ")
		sb_add(b, "%scoalesce(t.%s %s (" SET_VALUES "::text[])[%zu]::%s, false)", and, s->set[i].quoted,
		       s->set[i].eq, i + 1, s->set[i].type);
	sb_add(b, ")");
}

/* Row t still holds what the policy removes: for anonymize, it does not stand anonymized. */
static void sb_not_anonymized(struct sbuf *b, const struct frame *f)
{
	if (f->policy->action != POLICY_ACTION_ANONYMIZE)
		return;
	sb_add(b, " AND NOT ");
	sb_anonymized(b, f);
}

/* Exempt values as VALUES (a parameter or a parenthesised text[] expression) say: row t is not exempt. */
static void sb_not_exempt_by(struct sbuf *b, const struct frame *f, const char *values)
{
	const struct policy_column *e = &f->shape->exempt;
	sb_add(b, " AND (t.%s IS NULL OR NOT t.%s %s ANY (%s::text[]::%s[]))", e->quoted, e->quoted, e->eq, values,
	       e->type);
}

/*
 * Row t is due by HORIZON under the version in force too, for a rule that
 * waits for approval: its retain and exempt values are read from the
 * version's row (an integer the daemon formats, nothing of the
 * configuration), whose frame is this rule's, so the clock and the exempt
 * column are this rule's columns. Nothing is, if that version cannot be told
 * row by row.
 */
static void sb_due_in_force(struct sbuf *b, const struct frame *f, const char *horizon)
{
	const struct policy_unapproved *u = f->unapproved;
	if (u == NULL)
		return;
	if (u->in_force == 0) {
		sb_add(b, " AND false");
		return;
	}
	{
		char *retain =
			xasprintf("(SELECT r.retain FROM retention.rule_versions r WHERE r.id OPERATOR(pg_catalog.=)"
				  " %lld)",
				  u->in_force);
		char *due_at = due_at_with(f, retain);
		sb_add(b, " AND %s <= (%s)", due_at, horizon);
		free(due_at);
		free(retain);
	}
	if (u->in_force_exempts) {
		char *values = xasprintf("(SELECT r.exempt_values FROM retention.rule_versions r"
					 " WHERE r.id OPERATOR(pg_catalog.=) %lld)",
					 u->in_force);
		sb_not_exempt_by(b, f, values);
		free(values);
	}
}

/* Rows of T due by HORIZON (an SQL timestamptz expression), under the version in force too while one waits. */
static void sb_due_by(struct sbuf *b, const struct frame *f, const char *horizon)
{
	const char *c = f->clock;
	char *shortest = f->policy->retain_column ? retain_bound(f, "min", "$2::interval") : xstrdup("$2::interval");
	char *at = xasprintf("(%s) - %s + %s", horizon, shortest,
			     f->policy->retain_column ? "'" SLACK_MAX "'::interval" : "$3::interval");
	char *bound = clock_bound(f, at);
	sb_add(b,
	       "%s IS NOT NULL"
	       " AND %s <= %s"
	       " AND %s <= (%s)",
	       c, c, bound, f->due_at, horizon);
	free(shortest);
	free(at);
	free(bound);
	sb_not_anonymized(b, f);
	sb_due_in_force(b, f, horizon);
}

static void sb_not_exempt(struct sbuf *b, const struct frame *f)
{
	if (f->policy->exempt_column)
		sb_not_exempt_by(b, f, "$4");
}

/* TEXT as a string literal (standard_conforming_strings, which the session pins). */
static void sb_literal(struct sbuf *b, const char *text)
{
	sb_add(b, "'");
	for (const char *p = text; *p; p++)
		sb_add(b, "%s%c", *p == '\'' ? "'" : "", *p);
	sb_add(b, "'");
}

/* COL as a key of one column: what is said of keys holds of it too. */
static struct policy_key key_of_column(const struct policy_column *col)
{
	struct policy_key k = {(struct policy_column *)col, 1, NULL};
	return k;
}

/* Row t's key columns, comma-separated: an ORDER BY. */
static void sb_key_columns(struct sbuf *b, const struct policy_key *k)
{
	for (size_t i = 0; i < k->n; i++)
		sb_add(b, "%st.%s", i ? ", " : "", k->columns[i].quoted);
}

/* Row t's record_key: its key column as text, or its key columns' row as text. */
static void sb_key_text(struct sbuf *b, const struct policy_key *k)
{
	if (k->n == 1) {
		sb_add(b, "t.%s::text", k->columns[0].quoted);
		return;
	}
	sb_add(b, "ROW(");
	sb_key_columns(b, k);
	sb_add(b, ")::text");
}

/* Row t's composite key is FIELDS, a text[] expression of one field per column, each cast to its column's type. */
static void sb_key_equals_fields(struct sbuf *b, const struct policy_key *k, const char *fields)
{
	sb_add(b, "(");
	for (size_t i = 0; i < k->n; i++) {
		const struct policy_column *c = &k->columns[i];
		sb_add(b, "%st.%s %s (%s)[%zu]::%s", i ? " AND " : "", c->quoted, c->eq, fields, i + 1, c->type);
	}
	sb_add(b, ")");
}

/* The types of a composite key's columns as a text[] constructor, for retention.record_fields_valid. */
static void sb_key_types(struct sbuf *b, const struct policy_key *k)
{
	sb_add(b, "ARRAY[");
	for (size_t i = 0; i < k->n; i++) {
		sb_add(b, "%s", i ? ", " : "");
		sb_literal(b, k->columns[i].type);
	}
	sb_add(b, "]::text[]");
}

/*
 * Row t's key equals the record_key TEXT (an SQL expression), compared in
 * each key column's type. A TEXT that is no key of the type fails the
 * statement, as a cast does. Index-friendly: each column is compared with
 * an expression of TEXT alone.
 */
static void sb_key_equals(struct sbuf *b, const struct policy_key *k, const char *text)
{
	char *fields;
	if (k->n == 1) {
		const struct policy_column *c = &k->columns[0];
		sb_add(b, "t.%s %s (%s)::text::%s", c->quoted, c->eq, text, c->type);
		return;
	}
	fields = xasprintf("retention.record_fields((%s)::text, %zu)", text, k->n);
	sb_key_equals_fields(b, k, fields);
	free(fields);
}

/*
 * Row t's key is among VALUES, record_keys as a text[] expression that does
 * not read row t, compared in each key column's type; a value that is no
 * key of the type names no record. Never NULL. One column's values are
 * cast once per statement, and hashed; a composite key's are read once per
 * statement and compared column by column, each in its own equality and the
 * column's collation.
 */
static void sb_key_among(struct sbuf *b, const struct policy_key *k, const char *values)
{
	if (k->n == 1) {
		const struct policy_column *c = &k->columns[0];
		sb_add(b,
		       "coalesce(t.%s %s ANY (SELECT pg_catalog.unnest(retention.cast_valid(a.v, NULL::%s, %d))"
		       " FROM (SELECT %s AS v) a WHERE a.v IS NOT NULL), false)",
		       c->quoted, c->eq, c->type, c->typmod, values);
		return;
	}
	sb_add(b, "EXISTS (SELECT FROM retention.record_fields_valid(%s, ", values);
	sb_key_types(b, k);
	sb_add(b, ") f(v) WHERE ");
	sb_key_equals_fields(b, k, "f.v");
	sb_add(b, ")");
}

/* The key_of of key K of TABLE: the table, a dot, its quoted column, or its columns in parentheses. */
static char *key_of_text(const char *table, const struct policy_key *k)
{
	struct sbuf b = {NULL, 0};
	if (k->n == 1)
		return xasprintf("%s.%s", table, k->columns[0].quoted);
	sb_add(&b, "%s.(", table);
	for (size_t i = 0; i < k->n; i++)
		sb_add(&b, "%s%s", i ? ", " : "", k->columns[i].quoted);
	sb_add(&b, ")");
	return b.s;
}

char *policy_key_of(const struct policy_shape *shape) { return key_of_text(shape->table, &shape->key); }

/*
 * Hold h's key_of names the key columns COLUMNS (".c" or ".(a, b)", as
 * key_of_text writes them after the table), or with NOT, others. By the
 * columns only: the policies of a partition tree are each on one of its
 * tables, and a hold placed under one names the record in all.
 */
static void sb_hold_key_is(struct sbuf *b, const char *columns, bool not )
{
	sb_add(b, "pg_catalog.right(h.key_of, pg_catalog.length(");
	sb_literal(b, columns);
	sb_add(b, ")) OPERATOR(pg_catalog.%s) ", not ? "<>" : "=");
	sb_literal(b, columns);
}

/*
 * The values of HOLD_COLUMN (record_key or subject) of sibling I's active
 * holds, as a text[] that does not read row t: one per statement, and NULL
 * without holds, when no cast (dynamic SQL) is called at all. Keys only of
 * holds placed under KEY_OF, the sibling's key columns now (or before holds
 * said).
 */
static char *held_values(size_t i, const char *hold_column, const char *key_of)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b,
	       "(SELECT pg_catalog.array_agg(h.%s) FROM retention.active_holds(ARRAY[($11::text[])[%zu]]) h"
	       " WHERE h.%s IS NOT NULL",
	       hold_column, i + 1, hold_column);
	if (key_of) {
		sb_add(&b, " AND (h.key_of IS NULL OR ");
		sb_hold_key_is(&b, key_of, false);
		sb_add(&b, ")");
	}
	sb_add(&b, ")");
	return b.s;
}

/*
 * Sibling I has an active hold on a record named under other key columns
 * than KEY_OF, its key's now (NULL: it has no key the statements read): which
 * record it names cannot be told, so it keeps every record of the table.
 * Uncorrelated: once per statement.
 */
static void sb_held_under_another_key(struct sbuf *b, size_t i, const char *key_of)
{
	sb_add(b,
	       "EXISTS (SELECT FROM retention.active_holds(ARRAY[($11::text[])[%zu]]) h WHERE h.record_key IS NOT NULL",
	       i + 1);
	if (key_of) {
		sb_add(b, " AND ");
		sb_hold_key_is(b, key_of, true);
	}
	sb_add(b, ")");
}

/*
 * Whether row t is under an active hold of any policy on its table, each
 * compared in that policy's own key and subject columns. Never NULL.
 */
static void sb_held(struct sbuf *b, const struct frame *f)
{
	bool any = false;
	sb_add(b, "(");
	for (size_t i = 0; i < f->shape->n_siblings; i++) {
		const struct policy_sibling *s = &f->shape->siblings[i];
		char *key_of = key_usable(&s->key) ? key_of_text("", &s->key) : NULL;
		sb_add(b, "%s", any ? " OR " : "");
		sb_held_under_another_key(b, i, key_of);
		any = true;
		if (key_of) {
			char *held = held_values(i, "record_key", key_of);
			sb_add(b, " OR ");
			sb_key_among(b, &s->key, held);
			free(held);
		}
		free(key_of);
		if (s->subject.quoted && s->subject.eq) {
			struct policy_key subject = key_of_column(&s->subject);
			char *held = held_values(i, "subject", NULL);
			sb_add(b, "%s", any ? " OR " : "");
			sb_key_among(b, &subject, held);
			free(held);
			any = true;
		}
	}
	sb_add(b, "%s)", any ? "" : "false");
}

/* Row t is not referenced by rows that must stay (policy_guard). */
static void sb_not_referenced(struct sbuf *b, const struct frame *f)
{
	for (size_t i = 0; i < f->shape->n_guards; i++)
		sb_add(b, " AND %s", f->shape->guards[i].sql);
}

/* What retention.quarantine.key_of says of this policy's records: its table and key column. */
static void sb_key_of(struct sbuf *b, const struct frame *f)
{
	char *key_of = policy_key_of(f->shape);
	sb_literal(b, key_of);
	free(key_of);
}

/*
 * Row t is not a quarantined record (retention.quarantine) waiting for its
 * retry. Recorded under the key's type, a key may still not cast any more
 * (an enum's label renamed): sb_key_among drops it, where a plain cast would
 * fail every statement of the policy. The quarantine is read once per
 * statement, and the cast not called at all while nothing is quarantined.
 */
static void sb_not_quarantined(struct sbuf *b, const struct frame *f)
{
	struct sbuf keys = {NULL, 0};
	sb_add(&keys, "(SELECT pg_catalog.array_agg(q.record_key) FROM retention.quarantine q"
		      " WHERE q.policy OPERATOR(pg_catalog.=) $1 AND q.key_type OPERATOR(pg_catalog.=) ");
	sb_literal(&keys, f->shape->key.type);
	sb_add(&keys, " AND q.key_of OPERATOR(pg_catalog.=) ");
	sb_key_of(&keys, f);
	sb_add(&keys,
	       " AND (q.retry_at IS NULL OR q.retry_at OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp()))");
	sb_add(b, " AND NOT ");
	sb_key_among(b, &f->shape->key, keys.s);
	free(keys.s);
}

/* Everything but due-ness that makes row t purgeable now. */
static void sb_purgeable(struct sbuf *b, const struct frame *f)
{
	sb_not_exempt(b, f);
	sb_add(b, " AND NOT ");
	sb_held(b, f);
	sb_not_referenced(b, f);
	sb_not_quarantined(b, f);
}

/*
 * The earliest DUE_AT of a purgeable record of CLASS (a condition on row t):
 * the minimum over every row from the first by clock to WINDOW_END, a
 * value of the clock column reading first.c (the first's clock) and
 * first.at (its due time), as due times are not monotone in the clock (a
 * month's end clamps, a DST change repeats an hour).
 */
static void sb_first_due(struct sbuf *b, const struct frame *f, const char *due_at, const char *in_force_exempt,
			 const char *class, const char *window_end)
{
	const char *c = f->clock;
	char *never = clock_never(f);
	/* A clock that reads as never due is no first: the slack added to it could pass the last timestamp. */
	sb_add(b,
	       "(SELECT pg_catalog.min(%s) FROM %s t, (SELECT %s AS c, %s AS at FROM %s t WHERE %s AND %s IS NOT NULL"
	       " AND %s < %s",
	       due_at, f->shape->table, c, due_at, f->shape->table, class, c, c, never);
	sb_not_anonymized(b, f);
	sb_purgeable(b, f);
	if (in_force_exempt)
		sb_not_exempt_by(b, f, in_force_exempt);
	sb_add(b, " ORDER BY %s LIMIT 1) first WHERE %s AND %s >= first.c AND %s <= %s", c, class, c, c, window_end);
	sb_not_anonymized(b, f);
	sb_purgeable(b, f);
	if (in_force_exempt)
		sb_not_exempt_by(b, f, in_force_exempt);
	sb_add(b, ")");
	free(never);
}

/*
 * Interval V in seconds as intervals compare (a month is 30 days): every
 * interval of its class is equal to it so.
 */
static char *interval_seconds(const char *v)
{
	return xasprintf(
		"(((EXTRACT(year FROM %s) * 12 + EXTRACT(month FROM %s)) * 30 + EXTRACT(day FROM %s)) * 86400"
		" + EXTRACT(hour FROM %s) * 3600 + EXTRACT(minute FROM %s) * 60 + EXTRACT(second FROM %s))::float8",
		v, v, v, v, v, v);
}

/*
 * The earliest due time of a purgeable record. With a retain column the
 * earliest due is not the oldest clock: each duration is a class whose first
 * by clock is found through an index on (retain column, clock), the classes
 * walked as a loose index scan (each the next value after the last), and the
 * records without a duration of their own are one more. An interval class
 * holds every interval equal to its value ('1 mon' and '30 days' are), so
 * its window reaches as far as one of them could still fall due first; a
 * count is elapsed time, monotone in the clock.
 */
static void sb_next_due(struct sbuf *b, const struct frame *f)
{
	const struct policy_unapproved *u = f->unapproved;
	const char *slack = u ? "'" SLACK_MAX "'::interval" : "$3::interval";
	char *due_at, *in_force_exempt = NULL, *slack_end;
	if (u && u->in_force == 0) {
		/* Nothing is purged until the rule is approved: nothing to wake for. */
		sb_add(b, "NULL::timestamptz");
		return;
	}
	if (u) {
		/* Due under both versions: the later of the two due times, among rows neither exempts. */
		char *retain =
			xasprintf("(SELECT r.retain FROM retention.rule_versions r WHERE r.id OPERATOR(pg_catalog.=)"
				  " %lld)",
				  u->in_force);
		char *in_force = due_at_with(f, retain);
		due_at = xasprintf("GREATEST(%s, %s)", f->due_at, in_force);
		free(retain);
		free(in_force);
		if (u->in_force_exempts)
			in_force_exempt = xasprintf("(SELECT r.exempt_values FROM retention.rule_versions r"
						    " WHERE r.id OPERATOR(pg_catalog.=) %lld)",
						    u->in_force);
	} else {
		due_at = xstrdup(f->due_at);
	}
	slack_end = clock_plus(f, "first.c", slack);
	if (f->policy->retain_column == NULL) {
		sb_first_due(b, f, due_at, in_force_exempt, "true", slack_end);
	} else {
		const char *r = f->shape->retain.quoted;
		char *s_r = xasprintf("s.%s", r), *in_bounds = retain_in_bounds(f, s_r);
		char *of_null = xasprintf("t.%s IS NULL", r), *of_class = xasprintf("t.%s = cls.v", r);
		sb_add(b,
		       "(WITH RECURSIVE cls(v) AS (SELECT pg_catalog.min(s.%s) FROM %s s WHERE %s"
		       " UNION ALL SELECT (SELECT pg_catalog.min(s.%s) FROM %s s WHERE s.%s > cls.v AND %s) FROM cls"
		       " WHERE cls.v IS NOT NULL) SELECT pg_catalog.min(x.at) FROM (SELECT ",
		       r, f->shape->table, in_bounds, r, f->shape->table, r, in_bounds);
		char *class_end;
		if (f->shape->retain_kind == POLICY_RETAIN_INTERVAL) {
			/*
			 * A record of the class at clock c falls due at c plus its
			 * interval, equal to the class's value as intervals compare,
			 * and at most SLACK_MAX earlier on the calendar (a short
			 * month, a DST day, a clock without a zone). Past the first's
			 * due less that, none can fall due before it: '12 mon' and
			 * '360 days' are equal, yet five days apart.
			 */
			char *seconds = interval_seconds("cls.v");
			char *at = xasprintf(
				"first.at - pg_catalog.make_interval(secs => %s) + '" SLACK_MAX "'::interval", seconds);
			class_end = clock_bound(f, at);
			free(seconds);
			free(at);
		} else {
			/* A count is elapsed time: its due times are in clock order. */
			class_end = xstrdup("first.c");
		}
		sb_first_due(b, f, due_at, in_force_exempt, of_null, slack_end);
		sb_add(b, " AS at UNION ALL SELECT ");
		sb_first_due(b, f, due_at, in_force_exempt, of_class, class_end);
		sb_add(b, " FROM cls WHERE cls.v IS NOT NULL) x)");
		free(class_end);
		free(s_r);
		free(in_bounds);
		free(of_null);
		free(of_class);
	}
	free(slack_end);
	free(due_at);
	free(in_force_exempt);
}

/*
 * "WITH watched AS (...), unchanged AS (...)": unchanged.ok is whether the
 * catalog still says what the statements were built from (FINGERPRINT).
 */
static void sb_unchanged(struct sbuf *b, const struct frame *f)
{
	sb_add(b,
	       "WITH watched AS (SELECT '%s'::pg_catalog.oid[] AS w, %lld::pg_catalog.oid AS t"
	       "), unchanged AS (SELECT %s = '%s' AS ok)",
	       f->shape->watched, f->shape->oid,
	       FINGERPRINT("(SELECT w FROM watched)::pg_catalog.oid[]", "(SELECT t FROM watched)"),
	       f->shape->fingerprint);
}

/*
 * With CHECK_CATALOG (the statement asked at a resync) it checks the catalog
 * too: a change that hides every row (row-level security) leaves no purge to
 * find it. The one asked after every batch does not: a generic plan sets up
 * the check's subqueries at every run, used or not, and the purge checks the
 * catalog itself.
 */
static char *build_next_wake(const struct frame *f, bool check_catalog)
{
	struct sbuf b = {NULL, 0};
	if (check_catalog)
		sb_unchanged(&b, f);
	sb_add(&b,
	       " SELECT pg_catalog.min(at), (extract(epoch FROM pg_catalog.min(at))"
	       " - extract(epoch FROM pg_catalog.statement_timestamp()))::float8, %s AS catalog_changed, " SESSION_SETTINGS_SQL
	       " AS settings FROM (SELECT ",
	       check_catalog ? EXTRA_1 "::boolean AND NOT (SELECT ok FROM unchanged)" : EXTRA_1 "::boolean AND false");
	sb_next_due(&b, f);
	/* A hold that ends may leave its record due: wake then too. */
	sb_add(&b,
	       " AS at UNION ALL SELECT pg_catalog.min(h.until) FROM retention.active_holds($11::text[]) h"
	       /* A quarantined record is tried again at its retry_at. */
	       " UNION ALL SELECT pg_catalog.min(q.retry_at) FROM retention.quarantine q"
	       " WHERE q.policy OPERATOR(pg_catalog.=) $1 AND q.retry_at OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp()"
	       /* Rows of another table or key column hold back none of its records. */
	       " AND q.key_of OPERATOR(pg_catalog.=) ");
	sb_key_of(&b, f);
	sb_add(&b, ") w");
	return b.s;
}

/*
 * The first statement of a batch. A hold placed under any policy of the
 * table protects the record (sb_held), and place_hold() serialises on that
 * policy's lock only: the batch takes every sibling's lock, or none.
 */
static char *build_begin(const char *siblings)
{
	/*
	 * One simple query, one round trip: BEGIN, READ COMMITTED whatever the
	 * database's default (each statement must take its snapshot after the
	 * lock before it, so the rows it picks see every hold committed before
	 * the policy's lock was granted, and the purge sees every reference
	 * committed before its rows were locked), then the locks, in a statement
	 * that runs no code but the schema's: the audit writes before it are the
	 * transaction's baseline. The names are of [a-z0-9-] (the configuration
	 * allows no other), so they go in a literal as they are.
	 */
	return xasprintf(
		"BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE;"
		" SELECT coalesce(pg_catalog.bool_and(retention.try_lock_policy(s.name)), false), (SELECT " AUDIT_WRITES_SQL
		") FROM pg_catalog.unnest('%s'::pg_catalog.text[]) s(name)",
		siblings);
}

/*
 * With FRESH, only the records that fell due within POLICY_FRESH_WINDOW:
 * what a throttled policy still purges on time. The clock's lower bound,
 * widened by the slack, keeps it a short range of the clock's index.
 */
static char *build_lock(const struct frame *f, bool fresh)
{
	struct sbuf b = {NULL, 0};
	/* Built from a description that may be stale: the purge statement checks it, under the table's lock. */
	sb_add(&b,
	       "SELECT pg_catalog.count(*)::bigint AS locked, coalesce(pg_catalog.array_agg(l.toid), '{}') AS table_oids,"
	       " coalesce(pg_catalog.array_agg(l.tid), '{}') AS tids,"
	       " coalesce(pg_catalog.array_agg(l.record_key), '{}') AS keys"
	       " FROM (SELECT t.tableoid AS toid, t.ctid AS tid, ");
	sb_key_text(&b, &f->shape->key);
	sb_add(&b, " AS record_key FROM %s t WHERE ", f->shape->table);
	sb_due_by(&b, f, "pg_catalog.statement_timestamp()");
	if (fresh) {
		char *longest =
			f->policy->retain_column ? retain_bound(f, "max", "$2::interval") : xstrdup("$2::interval");
		char *at = xasprintf("pg_catalog.statement_timestamp() - '" POLICY_FRESH_WINDOW "'::interval - %s - %s",
				     longest, f->policy->retain_column ? "'" SLACK_MAX "'::interval" : "$3::interval");
		char *bound = clock_bound(f, at);
		sb_add(&b,
		       " AND %s >= %s"
		       " AND %s > pg_catalog.statement_timestamp() - '" POLICY_FRESH_WINDOW "'::interval",
		       f->clock, bound, f->due_at);
		free(longest);
		free(at);
		free(bound);
	}
	sb_purgeable(&b, f);
	sb_add(&b, " ORDER BY %s LIMIT $5::integer FOR UPDATE OF t SKIP LOCKED) l", f->clock);
	return b.s;
}


/* The purge's `set` values, assigned untyped, follow its two extra params (the locked rows' oids and tids). */
#define PURGE_FIRST_SET_PARAM (POLICY_PARAM_EXTRA + 3)

static char *build_purge(const struct frame *f)
{
	const struct policy *p = f->policy;
	const struct policy_shape *s = f->shape;
	struct sbuf b = {NULL, 0};

	/*
	 * The rows the lock statement locked, by their physical address: unlike
	 * the key it cannot match a child table's row or miss a row whose key is
	 * NULL; tableoid tells partitions apart. Each is fetched by a TID scan
	 * from the list, a plan that stays linear when the statement runs with a
	 * generic plan (prepared). Rows referenced meanwhile are skipped: this
	 * statement's snapshot is newer than the locks, so it sees every
	 * reference committed before them, and a later one waits for this
	 * transaction's row locks.
	 */
	sb_unchanged(&b, f);
	sb_add(&b, ", head AS ("
		   "SELECT seq, hash FROM retention.chain_heads WHERE policy = $1"
		   "), due AS MATERIALIZED (");
	sb_add(&b, "SELECT t.tableoid AS toid, t.ctid AS tid, ");
	sb_key_text(&b, &s->key);
	sb_add(&b,
	       " AS record_key, %s AS clock_at, %s AS due_at,"
	       " %s%s::text AS subject FROM ROWS FROM (pg_catalog.unnest(" EXTRA_1
	       "::oid[]), pg_catalog.unnest(" EXTRA_2 "::tid[]))"
	       " l(toid, tid) JOIN %s t ON t.ctid = l.tid AND t.tableoid = l.toid WHERE (SELECT ok FROM unchanged)",
	       f->clock_at, f->due_at, p->subject ? "t." : "", p->subject ? s->subject.quoted : "NULL", s->table);
	sb_not_referenced(&b, f);
	sb_add(&b, "), purged AS (");
	if (p->action == POLICY_ACTION_DELETE) {
		sb_add(&b, "DELETE FROM %s t USING due", s->table);
	} else {
		sb_add(&b, "UPDATE %s t SET ", s->table);
		for (size_t i = 0; i < s->n_set_null; i++)
			sb_add(&b, "%s%s = NULL", i ? ", " : "", s->set_null[i].quoted);
		for (size_t i = 0; i < s->n_set; i++)
			sb_add(&b, "%s%s = $%d", i || s->n_set_null ? ", " : "", s->set[i].quoted,
			       PURGE_FIRST_SET_PARAM + (int)i);
		sb_add(&b, " FROM due");
	}
	/* Everything audited comes from `due`: an anonymising UPDATE returns the new values, the audit wants the old. */
	sb_add(&b, " WHERE t.ctid = due.tid AND t.tableoid = due.toid"
		   " RETURNING due.toid, due.tid, due.record_key, due.subject, due.clock_at, due.due_at, ");
	if (p->action == POLICY_ACTION_DELETE) {
		sb_add(&b, "true AS took");
	} else {
		/* The row as stored: a BEFORE trigger may have put back what the UPDATE cleared. */
		sb_anonymized(&b, f);
		sb_add(&b, " AS took");
	}
	/*
	 * The audit rows are the daemon's to write (audit_insert_sql): it hashes
	 * them, and pseudonymizes what the trail must not keep, in the same
	 * transaction. This statement returns what they are made of, in chain
	 * order, with the head they continue.
	 */
	sb_add(&b, "), done AS (SELECT p.* FROM purged p)"
		   " SELECT pg_catalog.count(*)::bigint AS purged, (SELECT seq FROM head) AS head_seq,"
		   " pg_catalog.encode((SELECT hash FROM head), 'hex') AS head_hash,"
		   " coalesce(extract(epoch FROM pg_catalog.max(pg_catalog.statement_timestamp() - due_at)"
		   " FILTER (WHERE pg_catalog.isfinite(due_at))), 0)::float8 AS max_late_seconds,"
		   " (SELECT pg_catalog.array_agg(u.record_key) FROM (SELECT toid, tid, record_key FROM due"
		   " EXCEPT ALL SELECT toid, tid, record_key FROM purged) u) AS unpurged,"
		   " NOT (SELECT ok FROM unchanged) AS catalog_changed,"
		   " (SELECT pg_catalog.array_agg(x.record_key) FROM purged x WHERE NOT x.took) AS not_taken, ");
	if (p->action == POLICY_ACTION_DELETE)
		sb_add(&b, "NULL AS anonymized_keys, ");
	else
		sb_add(&b, "(SELECT pg_catalog.array_agg(x.record_key) FROM purged x) AS anonymized_keys, ");
	sb_add(&b,
	       "(SELECT pg_catalog.array_agg(x.record_key) FROM purged x WHERE x.record_key OPERATOR(pg_catalog.=) ANY"
	       " (ARRAY(SELECT q.record_key FROM retention.quarantine q WHERE q.policy OPERATOR(pg_catalog.=) $1"
	       " AND q.key_type OPERATOR(pg_catalog.=) ");
	sb_literal(&b, s->key.type);
	sb_add(&b, " AND q.key_of OPERATOR(pg_catalog.=) ");
	sb_key_of(&b, f);
	/* A -infinity clock is infinitely late; an erasure's record without a clock is not late at all. */
	sb_add(&b, "))) AS were_quarantined, (SELECT pg_catalog.array_agg(CASE WHEN x.due_at IS NULL THEN 0"
		   " WHEN NOT pg_catalog.isfinite(x.due_at) THEN 'infinity'::float8 ELSE extract(epoch FROM"
		   " pg_catalog.statement_timestamp() - x.due_at)::float8 END) FROM done x) AS lateness, ");
	sb_add(&b,
	       "pg_catalog.array_agg(record_key ORDER BY clock_at, record_key) AS keys,"
	       " pg_catalog.array_agg(subject ORDER BY clock_at, record_key) AS subjects,"
	       " pg_catalog.array_agg(" AUDIT_TIME_TEXT(
		       "clock_at") " ORDER BY clock_at, record_key) AS clock_ats,"
				   " pg_catalog.array_agg(" AUDIT_TIME_TEXT(
					   "due_at") " ORDER BY clock_at, record_key) AS due_ats,"
						     " " AUDIT_TIME_TEXT(
							     "pg_catalog.statement_timestamp()") " AS purged_at,"
												 " CASE WHEN pg_catalog.count(*) > 0 THEN pg_catalog.txid_current() END AS txid");
	sb_add(&b, " FROM done");
	return b.s;
}

/*
 * Of the keys (the first extra) an anonymising UPDATE took, those with no
 * row that still stands anonymized: an AFTER or deferred trigger wrote the
 * values back. By key, not by the row's address: a trigger that writes
 * the row again and leaves it anonymized (a touched timestamp) does no harm.
 */
static char *build_rewritten(const struct frame *f)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b,
	       "SELECT pg_catalog.array_agg(l.record_key) FROM pg_catalog.unnest(" EXTRA_1 "::text[]) l(record_key)"
	       " WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE ",
	       f->shape->table);
	sb_key_equals(&b, &f->shape->key, "l.record_key");
	sb_add(&b, " AND ");
	sb_anonymized(&b, f);
	sb_add(&b, ")");
	return b.s;
}

static char *build_pending(const struct frame *f)
{
	struct sbuf b = {NULL, 0};
	/*
	 * A record kept because rows that must stay refer to it is where the
	 * policy means it to be, like a held one: not overdue, or an alert on
	 * overdue records would fire for as long as those rows live.
	 */
	sb_add(&b, "SELECT pg_catalog.count(*) FILTER (WHERE is_due AND NOT held AND NOT referenced) AS overdue,"
		   " pg_catalog.count(*) FILTER (WHERE NOT is_due AND NOT held) AS due_within, ");
	sb_next_due(&b, f);
	sb_add(&b, " AS next_due_at, pg_catalog.count(*) FILTER (WHERE held) AS held,"
		   " pg_catalog.count(*) FILTER (WHERE is_due AND NOT held AND NOT referenced AND NOT purgeable)"
		   " AS quarantined,"
		   " pg_catalog.count(*) FILTER (WHERE is_due AND NOT held AND referenced) AS referenced,"
		   " extract(epoch FROM pg_catalog.min(due_at) FILTER (WHERE is_due AND NOT held AND NOT referenced))"
		   "::float8 AS oldest_overdue_at FROM (SELECT ");
	sb_due_by(&b, f, "pg_catalog.statement_timestamp()");
	sb_add(&b, " AS is_due, %s AS due_at, ", f->due_at);
	sb_held(&b, f);
	sb_add(&b, " AS held, NOT (true");
	sb_not_referenced(&b, f);
	sb_add(&b, ") AS referenced, true");
	sb_not_quarantined(&b, f);
	sb_add(&b, " AS purgeable FROM %s t WHERE ", f->shape->table);
	sb_due_by(&b, f, "pg_catalog.statement_timestamp() + " EXTRA_1 "::interval");
	sb_not_exempt(&b, f);
	sb_add(&b, ") w");
	return b.s;
}

/*
 * The records a rule waiting for approval would purge now that the version
 * in force would not, or within POLICY_GUARD_HORIZON that it would keep
 * longer: its guard's count. Built from a frame without the limit, so that
 * sb_due_by is the rule's own due test.
 */
#define NOW           "pg_catalog.statement_timestamp()"
#define GUARD_HORIZON NOW " + '" POLICY_GUARD_HORIZON "'::interval"

static char *build_newly_due(const struct frame *f)
{
	struct frame own = *f;
	struct sbuf b = {NULL, 0};
	own.unapproved = NULL;
	sb_add(&b, "SELECT pg_catalog.count(*)::bigint FROM %s t WHERE ", f->shape->table);
	if (f->unapproved->in_force == 0) {
		sb_due_by(&b, &own, GUARD_HORIZON);
	} else {
		/* Due now and not under the version in force; or due within the horizon and kept beyond it. */
		sb_add(&b, "((");
		sb_due_by(&b, &own, NOW);
		sb_add(&b, " AND NOT (true");
		sb_due_in_force(&b, f, NOW);
		sb_add(&b, ")) OR (");
		sb_due_by(&b, &own, GUARD_HORIZON);
		sb_add(&b, " AND NOT (true");
		sb_due_in_force(&b, f, GUARD_HORIZON);
		sb_add(&b, ")))");
	}
	/* Exempt by the rule itself: never due under it. A hold, a reference or a quarantine ends. */
	sb_not_exempt(&b, &own);
	return b.s;
}

/*
 * A quarantined record the application deleted leaves its row behind, and
 * the row would skip a new record that reuses the key. Only $1 is a
 * parameter: the statement is sent on its own.
 */
static char *build_quarantine_stale(const struct frame *f)
{
	const struct policy_key *k = &f->shape->key;
	struct sbuf b = {NULL, 0};
	/* Rows of another table or key column (the policy was moved) name none of its records. */
	sb_add(&b, "SELECT retention.quarantine_clear_rows($1, ARRAY(SELECT q.id FROM retention.quarantine q"
		   " WHERE q.policy OPERATOR(pg_catalog.=) $1 AND (q.key_of IS DISTINCT FROM ");
	sb_key_of(&b, f);
	sb_add(&b, " OR q.key_type OPERATOR(pg_catalog.=) ");
	sb_literal(&b, k->type);
	/* A key that no longer casts to the type (an enum's label renamed) names no record either; by the key's index. */
	if (k->n == 1) {
		const struct policy_column *c = &k->columns[0];
		sb_add(&b,
		       " AND NOT EXISTS (SELECT FROM %s t WHERE t.%s %s ANY (retention.cast_valid(ARRAY[q.record_key],"
		       " NULL::%s, %d))))))",
		       f->shape->table, c->quoted, c->eq, c->type, c->typmod);
	} else {
		sb_add(&b, " AND NOT EXISTS (SELECT FROM retention.record_fields_valid(ARRAY[q.record_key], ");
		sb_key_types(&b, k);
		sb_add(&b, ") f(v), %s t WHERE ", f->shape->table);
		sb_key_equals_fields(&b, k, "f.v");
		sb_add(&b, "))))");
	}
	return b.s;
}

static char *build_pending_records(const struct frame *f)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b, "SELECT $1 AS policy, ");
	sb_key_text(&b, &f->shape->key);
	sb_add(&b, " AS key, %s AS clock_at, %s AS due_at, ", f->clock_at, f->due_at);
	sb_held(&b, f);
	sb_add(&b, " AS held FROM %s t WHERE ", f->shape->table);
	sb_due_by(&b, f, "pg_catalog.statement_timestamp() + " EXTRA_1 "::interval");
	sb_not_exempt(&b, f);
	sb_add(&b, " ORDER BY %s LIMIT " EXTRA_2 "::bigint", f->clock);
	return b.s;
}

/* Row t of the record named by the first extra parameter (text), compared in the key column's type. */
static void sb_record(struct sbuf *b, const struct frame *f)
{
	sb_add(b, "%s t WHERE ", f->shape->table);
	sb_key_equals(b, &f->shape->key, EXTRA_1);
}

static char *build_explain(const struct frame *f)
{
	const struct policy_shape *s = f->shape;
	struct sbuf b = {NULL, 0};
	sb_add(&b, "SELECT ");
	sb_key_text(&b, &s->key);
	sb_add(&b, " AS key, %s AS clock_at, %s AS due_at, ", f->clock_at, f->due_at);
	if (f->policy->exempt_column)
		sb_add(&b, "coalesce(t.%s %s ANY ($4::text[]::%s[]), false) AS exempt, t.%s::text AS exempt_value, ",
		       s->exempt.quoted, s->exempt.eq, s->exempt.type, s->exempt.quoted);
	else
		sb_add(&b, "false AS exempt, NULL::text AS exempt_value, ");
	sb_add(&b, "coalesce(");
	sb_due_by(&b, f, "pg_catalog.statement_timestamp()");
	sb_add(&b, ", false) AS is_due, %s%s::text AS subject, ", f->policy->subject ? "t." : "",
	       f->policy->subject ? s->subject.quoted : "NULL");
	sb_held(&b, f);
	sb_add(&b, " AS held, ");
	if (f->policy->action == POLICY_ACTION_ANONYMIZE)
		sb_anonymized(&b, f);
	else
		sb_add(&b, "false");
	sb_add(&b, " AS anonymized, ");
	if (s->n_guards == 0) {
		sb_add(&b, "NULL::text AS kept_by");
	} else {
		sb_add(&b, "pg_catalog.array_to_string(ARRAY[");
		for (size_t i = 0; i < s->n_guards; i++)
			sb_add(&b, "%sCASE WHEN NOT %s THEN %zu END", i ? ", " : "", s->guards[i].sql, i);
		/* Indexes into policy_sql.guard_what, which C turns into words. */
		sb_add(&b, "], ',') AS kept_by");
	}
	/* A quarantined record, by its key as written: the daemon recorded it from this column's text form. */
	for (int i = 0; i < 2; i++) {
		sb_add(&b,
		       ", (SELECT q.%s FROM retention.quarantine q WHERE q.policy OPERATOR(pg_catalog.=) $1"
		       " AND q.key_type OPERATOR(pg_catalog.=) ",
		       i == 0 ? "error" : "retry_at");
		sb_literal(&b, s->key.type);
		sb_add(&b, " AND q.key_of OPERATOR(pg_catalog.=) ");
		sb_key_of(&b, f);
		sb_add(&b, " AND q.record_key OPERATOR(pg_catalog.=) ");
		sb_key_text(&b, &s->key);
		sb_add(&b,
		       " AND (q.retry_at IS NULL OR q.retry_at"
		       " OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp()) ORDER BY q.id LIMIT 1) AS %s",
		       i == 0 ? "quarantine_error" : "quarantine_retry");
	}
	sb_add(&b, " FROM ");
	sb_record(&b, f);
	return b.s;
}

/* How many records have KEY equal to the first extra parameter; an anonymized one is no longer one to hold. */
static char *build_records_of(const struct frame *f, const struct policy_key *key)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b, "SELECT pg_catalog.count(*) FROM %s t WHERE ", f->shape->table);
	sb_key_equals(&b, key, EXTRA_1);
	sb_not_anonymized(&b, f);
	return b.s;
}

/* Row t is of one of the data subjects $13 (text[]), compared in the subject column's type. */
static void sb_of_any_subject(struct sbuf *b, const struct frame *f)
{
	const struct policy_column *c = &f->shape->subject;
	sb_add(b, "t.%s %s ANY (retention.cast_valid(" EXTRA_1 "::text[], NULL::%s, %d))", c->quoted, c->eq, c->type,
	       c->typmod);
}

/* The same, and it still holds what the policy removes. */
static void sb_of_subjects(struct sbuf *b, const struct frame *f)
{
	sb_of_any_subject(b, f);
	sb_not_anonymized(b, f);
}

/*
 * An erasure request's batch: the subjects' records, whatever their clocks
 * say, that nothing keeps; locked as build_lock locks due ones, for the
 * same purge statement. Nothing while request $14 is not open: a request
 * rejected meanwhile stops at the batch in flight.
 */
static char *build_erase_lock(const struct frame *f)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b,
	       "SELECT pg_catalog.count(*)::bigint AS locked, coalesce(pg_catalog.array_agg(l.toid), '{}') AS table_oids,"
	       " coalesce(pg_catalog.array_agg(l.tid), '{}') AS tids,"
	       " coalesce(pg_catalog.array_agg(l.record_key), '{}') AS keys"
	       " FROM (SELECT t.tableoid AS toid, t.ctid AS tid, ");
	sb_key_text(&b, &f->shape->key);
	sb_add(&b, " AS record_key FROM %s t WHERE ", f->shape->table);
	sb_of_subjects(&b, f);
	sb_add(&b, " AND EXISTS (SELECT FROM retention.requests q WHERE q.id OPERATOR(pg_catalog.=) " EXTRA_2
		   "::bigint AND q.status OPERATOR(pg_catalog.=) 'open')");
	sb_purgeable(&b, f);
	sb_add(&b, " ORDER BY ");
	sb_key_columns(&b, &f->shape->key);
	sb_add(&b, " LIMIT $5::integer FOR UPDATE OF t SKIP LOCKED) l");
	return b.s;
}

/*
 * What is left of the subjects $13 after an erasure: -> erasable, kept (by a
 * hold, an exemption or a reference), why (their reasons, "; "-separated),
 * failed (records whose purge failed on their own: the daemon skips them),
 * settings (SESSION_SETTINGS_SQL).
 */
static char *build_erase_left(const struct frame *f)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b, "SELECT pg_catalog.count(*) FILTER (WHERE why IS NULL AND NOT failed) AS erasable,"
		   " pg_catalog.count(*) FILTER (WHERE why IS NOT NULL) AS kept,"
		   " pg_catalog.string_agg(DISTINCT why, '; ') AS why,"
		   " pg_catalog.count(*) FILTER (WHERE failed AND why IS NULL) AS failed,"
		   /* It reads the policy's table: what its owner's code may change of the session is read too. */
		   " " SESSION_SETTINGS_SQL " AS settings FROM (SELECT NOT (true");
	sb_not_quarantined(&b, f);
	sb_add(&b, ") AS failed, CASE WHEN NOT (true");
	sb_not_exempt(&b, f);
	sb_add(&b, ") THEN 'exempt' WHEN ");
	sb_held(&b, f);
	sb_add(&b, " THEN 'held' WHEN NOT (true");
	sb_not_referenced(&b, f);
	sb_add(&b, ") THEN 'referenced by rows that must stay' END AS why FROM %s t WHERE ", f->shape->table);
	sb_of_subjects(&b, f);
	sb_add(&b, ") w");
	return b.s;
}

/*
 * An access request's part (Art. 15): the policy's rule and every record of
 * the subjects $13, each as PostgreSQL renders the row, with the moment the
 * rule purges it (NULL while its clock has not started, or if it is
 * exempt) and whether a hold keeps it. $14 is the retention as configured, for people.
 */
static char *build_access(const struct frame *f)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b,
	       "SELECT pg_catalog.json_build_object('policy', $1, 'service', $6, 'source', $7, 'table', $8, 'retain', " EXTRA_2
	       "::text, 'action', $9, 'records', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object("
	       "'record', pg_catalog.row_to_json(t), 'due_at', CASE WHEN true");
	sb_not_exempt(&b, f);
	sb_add(&b, " THEN %s END, 'exempt', NOT (true", f->due_at);
	sb_not_exempt(&b, f);
	sb_add(&b, "), 'held', ");
	sb_held(&b, f);
	sb_add(&b, ") ORDER BY ");
	sb_key_columns(&b, &f->shape->key);
	sb_add(&b, "), '[]'::pg_catalog.json) FROM %s t WHERE ", f->shape->table);
	sb_of_any_subject(&b, f);
	sb_add(&b, "))::text");
	return b.s;
}

static char *build_explain_holds(const struct frame *f)
{
	const struct policy_shape *s = f->shape;
	struct sbuf b = {NULL, 0};
	sb_add(&b, "SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object('id', h.id, 'policy', h.policy,"
		   " 'reason', h.reason, 'until', h.until, 'placed_by', h.placed_by, 'placed_at', h.placed_at)"
		   " ORDER BY h.id), '[]')::text FROM retention.active_holds($11::text[]) h, ");
	sb_record(&b, f);
	sb_add(&b, " AND (false");
	for (size_t i = 0; i < s->n_siblings; i++) {
		const struct policy_sibling *sib = &s->siblings[i];
		char *key_of = key_usable(&sib->key) ? key_of_text("", &sib->key) : NULL;
		sb_add(&b, " OR (h.policy = ($11::text[])[%zu] AND (false", i + 1);
		/* A hold placed under another key keeps every record (sb_held_under_another_key). */
		sb_add(&b, " OR (h.record_key IS NOT NULL AND ");
		if (key_of) {
			sb_hold_key_is(&b, key_of, true);
			sb_add(&b, ") OR ((h.key_of IS NULL OR ");
			sb_hold_key_is(&b, key_of, false);
			sb_add(&b, ") AND ");
			sb_key_among(&b, &sib->key, "ARRAY[h.record_key]");
			sb_add(&b, ")");
		} else {
			sb_add(&b, "true)");
		}
		free(key_of);
		if (sib->subject.quoted && sib->subject.eq) {
			struct policy_key subject = key_of_column(&sib->subject);
			sb_add(&b, " OR ");
			sb_key_among(&b, &subject, "ARRAY[h.subject]");
		}
		sb_add(&b, "))");
	}
	sb_add(&b, ")");
	return b.s;
}

/*
 * Fails unless every exempt value and `set` value is valid input for its
 * column. Run on its own, it also makes the policy's lock row, so that the
 * first batches of two instances do not wait on each other's insert of it.
 */
static char *build_validate(const struct frame *f)
{
	const struct policy_shape *s = f->shape;
	struct sbuf b = {NULL, 0};
	sb_add(&b, "SELECT retention.try_lock_policy($1), %s%s%s", f->policy->exempt_column ? "$4::text[]::" : "true",
	       f->policy->exempt_column ? s->exempt.type : "", f->policy->exempt_column ? "[] IS NOT NULL" : "");
	for (size_t i = 0; i < s->n_set; i++)
		sb_add(&b, ", (" SET_VALUES "::text[])[%zu]::%s IS NULL", i + 1, s->set[i].type);
	/* Last, after the casts: a domain's check is code of its owner. */
	sb_add(&b, ", %s", SESSION_SETTINGS_SQL);
	return b.s;
}

static bool set_columns_compare(const struct policy_shape *s)
{
	for (size_t i = 0; i < s->n_set; i++)
		if (s->set[i].eq == NULL)
			return false;
	return true;
}

static bool shape_complete(const struct policy *p, const struct policy_shape *s, const char **why)
{
	*why = NULL;
	if (s->unsafe)
		*why = s->unsafe;
	else if (s->fingerprint == NULL || s->watched == NULL)
		*why = "its table's description is incomplete";
	else if (!key_usable(&s->key) || s->key.n != p->n_keys)
		*why = "a key column does not exist or has no equality operator";
	else if (s->clock.quoted == NULL || s->n_clock_columns != p->n_clocks)
		*why = "a clock column does not exist";
	else if ((s->clock_kind == POLICY_CLOCK_EPOCH) != (p->clock_unit != POLICY_CLOCK_UNIT_NONE))
		*why = "its clock column is an integer without clock_unit, or clock_unit is set for a clock that is not";
	else if (p->subject && (s->subject.quoted == NULL || s->subject.eq == NULL))
		*why = "its subject column does not exist or has no equality operator";
	else if (p->retain_column && (s->retain.quoted == NULL || s->retain_kind == POLICY_RETAIN_NONE ||
				      (s->retain_kind == POLICY_RETAIN_COUNT && s->clock_kind != POLICY_CLOCK_EPOCH)))
		*why = "its retain_column does not exist, or holds no duration it can read";
	else if (p->exempt_column && (s->exempt.quoted == NULL || s->exempt.eq == NULL))
		*why = "its exempt column does not exist or has no equality operator";
	else if (s->n_set_null != p->n_set_null || s->n_set != p->n_set)
		*why = "an anonymized column does not exist";
	else if (!set_columns_compare(s))
		*why = "an anonymized column has no equality operator";
	else if (s->n_siblings == 0 || strcmp(s->siblings[0].name, p->name) != 0)
		*why = "its table could not be matched to the configuration";
	return *why == NULL;
}

/* Whether the values of C's type equal to one are all written the one way (see build_canonical). */
static char *one_form_of(const struct policy_column *c)
{
	return xasprintf(
		"(SELECT coalesce(pg_catalog.bool_or(ap.amproc"
		" OPERATOR(pg_catalog.=) 'pg_catalog.btequalimage'::pg_catalog.regproc OR ap.amproc"
		" OPERATOR(pg_catalog.=) 'pg_catalog.btvarstrequalimage'::pg_catalog.regproc"
		" AND coalesce(co.collisdeterministic, true)), false)"
		" OR (ty.oid OPERATOR(pg_catalog.=) 'pg_catalog.numeric'::pg_catalog.regtype AND %d >= 0)"
		" FROM pg_catalog.pg_type ty LEFT JOIN pg_catalog.pg_collation co ON co.oid OPERATOR(pg_catalog.=)"
		" ty.typcollation LEFT JOIN LATERAL (SELECT oc.opcfamily, oc.opcintype FROM pg_catalog.pg_opclass oc"
		" WHERE oc.opcmethod OPERATOR(pg_catalog.=) 403 AND oc.opcdefault AND (oc.opcintype"
		" OPERATOR(pg_catalog.=) ty.oid OR EXISTS (SELECT FROM pg_catalog.pg_cast k WHERE k.castsource"
		" OPERATOR(pg_catalog.=) ty.oid AND k.casttarget OPERATOR(pg_catalog.=) oc.opcintype"
		" AND k.castmethod OPERATOR(pg_catalog.=) 'b')) ORDER BY oc.opcintype OPERATOR(pg_catalog.=) ty.oid"
		" DESC LIMIT 1) oc ON true LEFT JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily"
		" OPERATOR(pg_catalog.=) oc.opcfamily AND ap.amproclefttype OPERATOR(pg_catalog.=) oc.opcintype"
		" AND ap.amprocrighttype OPERATOR(pg_catalog.=) oc.opcintype AND ap.amprocnum OPERATOR(pg_catalog.=) 4"
		" WHERE ty.oid OPERATOR(pg_catalog.=) pg_catalog.pg_typeof(NULL::%s) GROUP BY ty.oid)",
		c->typmod, c->type);
}

/*
 * $13 as key K spells it, and whether that is the one spelling of the
 * values equal to it: the audit trail keeps a key or subject in the text
 * form the row had (or its pseudonym), so a lookup finds the equal values
 * written otherwise (citext's ALICE, numeric's 7.50) only when there are
 * none. The type's default b-tree class says so by an equalimage function
 * (PostgreSQL's test for deduplication: equal means the same bytes), or a
 * class it is binary-coercible to when it has none of its own; a numeric
 * with a scale is written with that scale. A composite key is spelt as
 * ROW(a, b)::text writes it, and has one spelling when each column has.
 */
static char *build_canonical(const struct policy_key *k)
{
	struct sbuf b = {NULL, 0};
	if (k->n == 1) {
		char *one = one_form_of(&k->columns[0]);
		sb_add(&b, "SELECT " EXTRA_1 "::text::%s::text, %s AS one_form", k->columns[0].type, one);
		free(one);
		return b.s;
	}
	sb_add(&b, "SELECT ROW(");
	for (size_t i = 0; i < k->n; i++)
		sb_add(&b, "%s(f.v)[%zu]::%s", i ? ", " : "", i + 1, k->columns[i].type);
	sb_add(&b, ")::text, ");
	for (size_t i = 0; i < k->n; i++) {
		char *one = one_form_of(&k->columns[i]);
		sb_add(&b, "%s%s", i ? " AND " : "", one);
		free(one);
	}
	sb_add(&b, " AS one_form FROM (SELECT retention.record_fields(" EXTRA_1 "::text, %zu) AS v) f", k->n);
	return b.s;
}

bool policy_sql_build(struct policy_sql *sql, const struct policy *p, const struct policy_shape *shape,
		      const char *instance, const struct policy_unapproved *unapproved, const char **why)
{
	struct frame f = {.shape = shape, .policy = p, .unapproved = unapproved};
	char retain[96], slack[32];
	char **siblings;

	memset(sql, 0, sizeof(*sql));
	if (!shape_complete(p, shape, why))
		return false;
	f.clock = clock_of_row(shape);
	f.clock_at = clock_time_of(&f, f.clock);
	f.due_at = due_at_with(&f, "$2::interval");

	sql->table = xstrdup(shape->table);
	sql->key_of = policy_key_of(shape);
	sql->validate = build_validate(&f);
	sql->next_wake = build_next_wake(&f, false);
	sql->next_wake_checked = build_next_wake(&f, true);
	sql->lock = build_lock(&f, false);
	sql->lock_fresh = build_lock(&f, true);
	sql->purge = build_purge(&f);
	if (p->action == POLICY_ACTION_ANONYMIZE)
		sql->rewritten = build_rewritten(&f);
	sql->pending = build_pending(&f);
	sql->quarantine_stale = build_quarantine_stale(&f);
	if (unapproved) {
		sql->newly_due = build_newly_due(&f);
		sql->unapproved = true;
	}
	sql->pending_records = build_pending_records(&f);
	sql->explain = build_explain(&f);
	sql->explain_holds = build_explain_holds(&f);
	sql->canonical_key = build_canonical(&shape->key);
	sql->key_records = build_records_of(&f, &shape->key);
	if (p->subject) {
		struct policy_key subject = key_of_column(&shape->subject);
		sql->subject_records = build_records_of(&f, &subject);
		sql->canonical_subject = build_canonical(&subject);
		if (shape->subject.eq) {
			sql->erase_lock = build_erase_lock(&f);
			sql->erase_left = build_erase_left(&f);
			sql->access = build_access(&f);
		}
	}
	sql->n_guards = shape->n_guards;
	sql->guard_what = xcalloc(shape->n_guards + 1, sizeof(char *));
	for (size_t i = 0; i < shape->n_guards; i++)
		sql->guard_what[i] = xstrdup(shape->guards[i].what);

	duration_to_sql(&p->retain, retain, sizeof(retain));
	policy_slack(&p->retain, policy_clock_without_zone(shape), slack, sizeof(slack));
	siblings = xcalloc(shape->n_siblings + 1, sizeof(char *));
	for (size_t i = 0; i < shape->n_siblings; i++)
		siblings[i] = shape->siblings[i].name;
	sql->params_storage[POLICY_PARAM_NAME] = xstrdup(p->name);
	sql->params_storage[POLICY_PARAM_RETAIN] = xstrdup(retain);
	sql->params_storage[POLICY_PARAM_SLACK] = xstrdup(slack);
	sql->params_storage[POLICY_PARAM_EXEMPT_VALUES] = policy_text_array(p->exempt_values, p->n_exempt_values);
	sql->params_storage[POLICY_PARAM_LIMIT] = xasprintf("%d", p->batch);
	sql->params_storage[POLICY_PARAM_SERVICE] = xstrdup(p->service);
	sql->params_storage[POLICY_PARAM_SOURCE] = xstrdup(p->source);
	sql->params_storage[POLICY_PARAM_TABLE] = xstrdup(p->table);
	sql->params_storage[POLICY_PARAM_ACTION] = xstrdup(policy_action_name(p->action));
	sql->params_storage[POLICY_PARAM_INSTANCE] = xstrdup(instance);
	sql->params_storage[POLICY_PARAM_SIBLINGS] = policy_text_array(siblings, shape->n_siblings);
	sql->begin = build_begin(sql->params_storage[POLICY_PARAM_SIBLINGS]);
	{
		char **values = xcalloc(p->n_set + 1, sizeof(char *));
		for (size_t i = 0; i < p->n_set; i++)
			values[i] = p->set[i].value;
		sql->params_storage[POLICY_PARAM_SET_VALUES] = policy_text_array(values, p->n_set);
		free(values);
	}
	free(siblings);
	free(f.clock);
	free(f.clock_at);
	free(f.due_at);

	/*
	 * Intervals go as intervals: sent as text, `$2::interval` is a cast the
	 * planner cannot fold (interval input depends on IntervalStyle), so it
	 * ran for every row scanned.
	 */
	sql->params = xcalloc(POLICY_N_BASE_PARAMS, sizeof(*sql->params));
	sql->types = xcalloc(POLICY_N_BASE_PARAMS, sizeof(*sql->types));
	for (int i = 0; i < POLICY_N_BASE_PARAMS; i++) {
		sql->params[i] = sql->params_storage[i];
		sql->types[i] = base_param_types[i];
	}
	sql->n_params = POLICY_N_BASE_PARAMS;
	sql->set_values = xcalloc(p->n_set + 1, sizeof(char *));
	for (size_t i = 0; i < p->n_set; i++)
		sql->set_values[i] = p->set[i].value;
	sql->n_set_values = (int)p->n_set;
	return true;
}

int policy_params(const struct policy_sql *sql, const char **params, Oid *types, const char *const *extra, int n_extra,
		  bool with_set_values)
{
	int n = 0;
	for (int i = 0; i < POLICY_N_BASE_PARAMS; i++, n++) {
		params[n] = sql->params[i];
		types[n] = sql->types[i];
	}
	for (int i = 0; i < n_extra; i++, n++) {
		params[n] = extra[i];
		types[n] = 0;
	}
	for (int i = 0; with_set_values && i < sql->n_set_values; i++, n++) {
		params[n] = sql->set_values[i];
		types[n] = 0;
	}
	return n;
}

void policy_sql_free(struct policy_sql *sql)
{
	free(sql->key_of);
	free(sql->table);
	free(sql->validate);
	free(sql->next_wake);
	free(sql->next_wake_checked);
	free(sql->begin);
	free(sql->lock);
	free(sql->lock_fresh);
	free(sql->purge);
	free(sql->rewritten);
	free(sql->pending);
	free(sql->quarantine_stale);
	free(sql->pending_records);
	free(sql->explain);
	free(sql->explain_holds);
	free(sql->subject_records);
	free(sql->key_records);
	free(sql->canonical_key);
	free(sql->canonical_subject);
	free(sql->erase_lock);
	free(sql->erase_left);
	free(sql->access);
	free(sql->newly_due);
	for (size_t i = 0; i < sql->n_guards; i++)
		free(sql->guard_what[i]);
	free(sql->guard_what);
	for (int i = 0; i < POLICY_N_BASE_PARAMS; i++)
		free(sql->params_storage[i]);
	free(sql->params);
	free(sql->types);
	free(sql->set_values);
	memset(sql, 0, sizeof(*sql));
}

/* ---- synchronously, for retentionctl, --check and tests ---- */

static char *primary_message(const PGresult *res)
{
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	return xstrdup(msg ? msg : "unexpected result");
}

static void failed_sqlstate(struct policy_shape *shape, const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	snprintf(shape->sqlstate, sizeof(shape->sqlstate), "%s", state ? state : "");
}

bool policy_prepare(PGconn *conn, const struct config *cfg, const struct policy *p, struct policy_shape *shape,
		    struct policy_sql *sql, char **err)
{
	char *schema, *rel, *params[POLICY_DESCRIBE_N_PARAMS];
	const char *resolve[2], *why;
	PGresult *res;
	long long oid;
	int n;

	memset(shape, 0, sizeof(*shape));
	memset(sql, 0, sizeof(*sql));
	*err = NULL;
	if (!policy_resolve_params(p, &schema, &rel)) {
		*err = xasprintf("table %s: not a table name", p->table);
		return false;
	}
	resolve[0] = schema;
	resolve[1] = rel;
	res = PQexecParams(conn, policy_resolve_table_sql, 2, NULL, resolve, NULL, NULL, 0);
	free(schema);
	free(rel);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		*err = primary_message(res);
		failed_sqlstate(shape, res);
	} else if (PQntuples(res) == 0) {
		*err = xasprintf("table %s does not exist", p->table);
	} else {
		char *table = xstrdup(PQgetvalue(res, 0, 1));
		oid = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
		n = policy_describe_params(cfg, p, oid, params);
		res = PQexecParams(conn, policy_describe_sql, n, NULL, (const char *const *)params, NULL, NULL, 0);
		policy_params_free(params, n);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			*err = primary_message(res);
			failed_sqlstate(shape, res);
		} else {
			policy_shape_parse(shape, res, oid, table);
			if (!policy_sql_build(sql, p, shape, cfg->instance, NULL, &why))
				*err = xstrdup(why);
		}
		free(table);
	}
	PQclear(res);
	return *err == NULL;
}
