#!/usr/bin/env python3
"""An independent verifier of `retentionctl audit export` files.

Written from docs/audit-format.md alone, with Python's standard library, so
that the test suite can check retentiond's trail with code that shares
nothing with it. Exit status as `retentionctl audit verify`: 0 intact, 3 not,
2 usage.

    tests/verify-export.py FILE [--policy P] [--head SEQ:HASH]
    tests/verify-export.py --self-test docs/audit-format.md
"""
import argparse
import hashlib
import hmac
import json
import re
import sys

FIELDS = ["format", "policy", "seq", "service", "source", "table_name", "record_key", "subject",
          "clock_at", "due_at", "purged_at", "action", "cause", "request_id", "instance", "txid"]
NUMBERS = {"format", "seq", "request_id", "txid"}
ROW_KEYS = set(FIELDS) | {"prev_hash", "hash"}
GENESIS = "0" * 64


def text(value):
    return None if value is None else str(value)


def payload_v2(row):
    out = b""
    for name in FIELDS:
        value = text(row[name])
        if value is None:
            out += b"-,"
        else:
            data = value.encode("utf-8")
            out += str(len(data)).encode() + b":" + data + b","
    return out


def json_string_as_postgresql(value):
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out = '"'
    for ch in value:
        if ch in escapes:
            out += escapes[ch]
        elif ord(ch) < 0x20:
            out += "\\u%04x" % ord(ch)
        else:
            out += ch
    return out + '"'


def payload_v1(row):
    parts = []
    for name in ["policy", "seq", "service", "source", "table_name", "record_key", "subject",
                 "clock_at", "due_at", "purged_at", "action", "instance", "txid"]:
        value = row[name]
        if value is None:
            parts.append("null")
        elif name in NUMBERS:
            parts.append(str(value))
        else:
            parts.append(json_string_as_postgresql(value))
    return ("[" + ", ".join(parts) + "]").encode("utf-8")


def chain_hash(prev_hex, payload):
    return hashlib.sha256(bytes.fromhex(prev_hex) + payload).hexdigest()


INT_MAX = 2 ** 63 - 1


def integer(literal):
    """The format's integers: no sign, no more than a bigint holds."""
    if literal.startswith("-") or int(literal) > INT_MAX:
        raise ValueError("an integer from 0 to %d was expected, not %s" % (INT_MAX, literal))
    return int(literal)


def is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_text(value):
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("a key appears twice in one object")
    return dict(pairs)


def check_row(row):
    if set(row) != ROW_KEYS:
        return "a row has exactly the fields of docs/audit-format.md"
    for name in ROW_KEYS:
        value = row[name]
        if value is None:
            continue
        if name in NUMBERS and not is_integer(value):
            return "%s is not an integer" % name
        if name not in NUMBERS and not is_text(value):
            return "%s is not a string of UTF-8 text" % name
    for name in ["format", "policy", "seq", "prev_hash", "hash"]:
        if row[name] is None:
            return "%s is null" % name
    if not re.fullmatch(r"[0-9a-f]{64}", row["prev_hash"]) or not re.fullmatch(r"[0-9a-f]{64}", row["hash"]):
        return "a hash is not 64 lowercase hex digits"
    return None


class Chain:
    def __init__(self):
        self.records = 0
        self.last_seq = 0
        self.last_hash = GENESIS
        self.format2_seen = False
        self.head = None
        self.problem = None
        self.hashes = {}

    def broken(self, why):
        if self.problem is None:
            self.problem = why


def verify(path, only_policy, anchor):
    chains = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                obj = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates, parse_int=integer)
            except ValueError as e:
                return fail_line(lineno, str(e))
            if not isinstance(obj, dict):
                return fail_line(lineno, "a line is not an object")
            if "chain_head" in obj:
                head = obj["chain_head"]
                if (len(obj) != 1 or not isinstance(head, dict) or set(head) != {"policy", "seq", "hash"}
                        or not is_integer(head["seq"]) or not is_text(head["policy"])
                        or not is_text(head["hash"])):
                    return fail_line(lineno, "a malformed chain_head")
                if only_policy is None or head["policy"] == only_policy:
                    chain = chains.setdefault(head["policy"], Chain())
                    # The head line ends its chain: it names the last record before it.
                    if chain.head is not None:
                        chain.broken("a second chain_head line (line %d)" % lineno)
                    elif head["seq"] != chain.last_seq:
                        chain.broken("the chain head (line %d) is seq %d, the records before it end at seq %d"
                                     % (lineno, head["seq"], chain.last_seq))
                    elif head["hash"] != chain.last_hash:
                        chain.broken("the chain head (line %d) has another hash than record seq %d"
                                     % (lineno, chain.last_seq))
                    chain.head = (head["seq"], head["hash"])
                continue
            why = check_row(obj)
            if why:
                return fail_line(lineno, why)
            if only_policy is not None and obj["policy"] != only_policy:
                continue
            chain = chains.setdefault(obj["policy"], Chain())
            chain.records += 1
            if chain.head is not None:
                chain.broken("record seq %d (line %d) comes after the chain_head line" % (obj["seq"], lineno))
                continue
            if obj["format"] == 2:
                payload = payload_v2(obj)
            elif obj["format"] == 1:
                payload = payload_v1(obj)
            else:
                payload = None
            seq = obj["seq"]
            if payload is None:
                chain.broken("record seq %d (line %d): unknown format %d" % (seq, lineno, obj["format"]))
            elif obj["format"] == 1 and chain.format2_seen:
                chain.broken("record seq %d (line %d): format 1 after format 2" % (seq, lineno))
            elif seq != chain.last_seq + 1:
                chain.broken("record seq %d (line %d) follows seq %d" % (seq, lineno, chain.last_seq))
            elif obj["prev_hash"] != chain.last_hash:
                chain.broken("record seq %d (line %d): prev_hash is not the hash before it" % (seq, lineno))
            elif chain_hash(obj["prev_hash"], payload) != obj["hash"]:
                chain.broken("record seq %d (line %d): its content does not match its hash" % (seq, lineno))
            chain.format2_seen = chain.format2_seen or obj["format"] != 1
            chain.last_seq = seq
            chain.last_hash = obj["hash"]
            chain.hashes[seq] = obj["hash"]
    if only_policy is not None and only_policy not in chains:
        chains[only_policy] = Chain()
        chains[only_policy].broken("nothing to verify for this policy")
    for chain in chains.values():
        if chain.head is None:
            chain.broken("no chain_head line")
    if anchor:
        seq, want = anchor
        chain = chains[only_policy]
        if chain.hashes.get(seq) != want:
            chain.broken("record seq %d does not match the anchor" % seq)
    status = 0
    for policy in sorted(chains):
        chain = chains[policy]
        state = "intact" if chain.problem is None else "BROKEN: " + chain.problem
        print("%s: %d records, head %d:%s, %s" % (policy, chain.records, chain.last_seq, chain.last_hash, state))
        if chain.problem is not None:
            print("verify-export: policy %s: %s" % (policy, chain.problem), file=sys.stderr)
            status = 3
    return status


def fail_line(lineno, why):
    print("verify-export: line %d: %s" % (lineno, why), file=sys.stderr)
    return 3


def block(doc, name):
    match = re.search(r"\n```" + name + r"\n(.*?)\n```", doc, re.S)
    if not match:
        raise SystemExit("no ```%s block" % name)
    return match.group(1)


def values(body):
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(" = ")
        out[name] = None if value == "-" else value
    return out


def self_test(doc_path):
    """The worked example of docs/audit-format.md, recomputed here."""
    doc = open(doc_path, encoding="utf-8").read()
    ps = values(block(doc, "pseudonym"))
    pseudonym = "hmac-sha256:" + hmac.new(bytes.fromhex(ps["key"]), ps["value"].encode(), hashlib.sha256).hexdigest()
    row = values(block(doc, "fields"))
    problems = []
    if pseudonym != ps["pseudonym"] or row["subject"] != pseudonym:
        problems.append("pseudonym: computed %s" % pseudonym)
    payload = payload_v2(row)
    if payload.decode() != block(doc, "payload"):
        problems.append("payload: computed %s" % payload.decode())
    digest = chain_hash(row["prev_hash"], payload)
    if digest != block(doc, "hash"):
        problems.append("hash: computed %s" % digest)
    for p in problems:
        print("verify-export: worked example: " + p, file=sys.stderr)
    return 3 if problems else 0


def main():
    parser = argparse.ArgumentParser(description="verify a retentionctl audit export")
    parser.add_argument("file", nargs="?")
    parser.add_argument("--policy")
    parser.add_argument("--head")
    parser.add_argument("--self-test", metavar="DOC")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args.self_test)
    if args.file is None:
        parser.error("a file to verify")
    anchor = None
    if args.head:
        match = re.fullmatch(r"([0-9]+):([0-9a-fA-F]{64})", args.head)
        if not match or args.policy is None:
            parser.error("--head takes SEQ:HASH, with --policy")
        anchor = (int(match.group(1)), match.group(2).lower())
    return verify(args.file, args.policy, anchor)


if __name__ == "__main__":
    sys.exit(main())
