#!/usr/bin/env python3
"""Parses every infra/terraform/*.tf file with python-hcl2 and checks what no parser checks:
that each Glue table Terraform builds comes from glue_schema.json (generated from the schema
module: `sentiflow schema --glue-json`), and that every table of the schema has a bucket."""
import glob
import json
import os
import sys

import hcl2

root = os.path.join(os.path.dirname(__file__), "..", "terraform")
parsed = {}
for f in sorted(glob.glob(os.path.join(root, "*.tf"))):
    with open(f) as fh:
        try:
            parsed[os.path.basename(f)] = hcl2.load(fh)
        except Exception as e:  # noqa: BLE001 - report which file, then fail
            sys.exit(f"parse_hcl: {f} does not parse: {e}")
schema = json.load(open(os.path.join(root, "glue_schema.json")))["tables"]
locals_ = {}
for doc in parsed.values():
    for block in doc.get("locals", []):
        locals_.update(block)
table_bucket = locals_["table_bucket"]
if isinstance(table_bucket, list):  # python-hcl2 wraps object values in a list
    table_bucket = table_bucket[0]
missing = set(schema) ^ set(table_bucket)
if missing:
    sys.exit(f"parse_hcl: tables without a bucket mapping (main.tf local.table_bucket) or unknown: {sorted(missing)}")
glue = [r for doc in parsed.values() for r in doc.get("resource", []) if "aws_glue_catalog_table" in r]
if len(glue) != 1 or "glue_schema.json" not in open(os.path.join(root, "main.tf")).read():
    sys.exit("parse_hcl: the Glue tables must be built from glue_schema.json (one for_each resource)")
print(f"parse_hcl: {len(parsed)} files parse; {len(schema)} Glue tables from glue_schema.json: {', '.join(sorted(schema))}")
