#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: portal_info
short_description: Probe the iShareRadio MQTT portal read-only and report the API shapes it serves
version_added: 0.1.0
description:
  - A first look at a portal before any other module writes to it. Checks the API token and the Mgmt REST API
    add-on, reads the portal's OpenAPI document (C(/api/v1/subscriber/docs) or the JSON behind it), one list page of
    MQTT clients and one of read-only subscribers, and reports what it saw.
  - Reports the API version, the shapes seen (list envelope, pagination, which field holds the id, label and pause
    state), the password and id fields of the create and rotate answers in the OpenAPI document, anything the
    collection's reader does not understand (RV(problems)), the rate-limit headers and the remaining hourly budget.
  - Never writes. Sends at most four requests (no retries). The result holds field names and counts, never passwords
    or the token (an id or label appears only where a problem names the row it is about), so it can be pasted into a
    bug report as it is.
  - When RV(understood) is false, the other modules of the collection refuse to write to this portal (they fail
    closed); report the result.
author:
  - isr.mqtt maintainers (@isr-mqtt)
extends_documentation_fragment:
  - isr.mqtt.portal
  - isr.mqtt.attributes
  - isr.mqtt.attributes.action_group
  - isr.mqtt.attributes.info_module
options: {}
notes:
  - The module talks only to the portal; run it on the controller (C(delegate_to=localhost) or C(connection=local)).
  - It fails when the portal cannot be reached, rejects the token, or the account lacks the Mgmt REST API add-on;
    the failure result carries everything probed so far.
  - It fails before any request when O(portal_url) is not the portal's address, for example when it ends in C(/api) or
    C(/api/v1) (give the origin, V(https://mqtt.ishareradio.com)); RV(problems) then names it.
seealso:
  - module: isr.mqtt.mqtt_client_info
  - name: The API contract (docs/api-contract.md)
    description: Every response shape the collection understands, and what it refuses.
    link: https://github.com/isr-mqtt/isr.mqtt/blob/main/docs/api-contract.md
"""

EXAMPLES = r"""
# Ad hoc, as the first step against a real portal:
#   ISR_PORTAL_URL=https://mqtt.ishareradio.com ISR_PORTAL_TOKEN=isr_mqtt_rest_... \
#     ansible localhost -m isr.mqtt.portal_info

- name: Probe the portal before the first write
  isr.mqtt.portal_info:
  register: probe

- name: Stop when the portal answers in shapes the collection does not understand
  ansible.builtin.assert:
    that: probe.understood
    fail_msg: "Not understood: {{ probe.problems }}"
"""

RETURN = r"""
understood:
  description: True when the reader understood every answer probed (then RV(problems) is empty).
  returned: always
  type: bool
problems:
  description: What the reader does not understand, or what is missing, in plain words. Empty when all is well.
  returned: always
  type: list
  elements: str
notes:
  description: What is missing but does not stop the other modules (no OpenAPI document, no rate-limit headers).
  returned: always
  type: list
  elements: str
token:
  description: V(accepted), V(rejected) or V(unknown) (the list request did not get that far).
  returned: always
  type: str
mgmt_addon:
  description: Whether the account has the Mgmt REST API add-on; null when unknown.
  returned: always
  type: bool
api:
  description: What the OpenAPI document says (empty fields when it is absent).
  returned: always
  type: dict
  contains:
    source:
      description: The path the document was read from; null when neither C(/docs) nor C(/openapi.json) served one.
      type: str
      sample: /api/v1/subscriber/openapi.json
    title:
      description: C(info.title).
      type: str
    version:
      description: The API version (C(info.version)).
      type: str
    openapi:
      description: The OpenAPI version of the document.
      type: str
    paths:
      description: The paths the document lists under the API.
      type: list
      elements: str
    create_request_fields:
      description: Fields of the create request (C(POST /publishers)).
      type: list
      elements: str
    create_response_fields:
      description: Fields of the create answer, dotted for nested objects.
      type: list
      elements: str
    create_password_fields:
      description: The create answer's fields that hold a password.
      type: list
      elements: str
    create_id_fields:
      description: The create answer's fields that may hold the client id.
      type: list
      elements: str
    rotate_response_fields:
      description: Fields of the rotate answer.
      type: list
      elements: str
    rotate_password_fields:
      description: The rotate answer's fields that hold a password.
      type: list
      elements: str
clients:
  description: The first list page of MQTT clients, as the reader saw it.
  returned: always
  type: dict
  contains:
    status:
      description: HTTP status of the list request (null when it was not answered).
      type: int
    envelope:
      description: V(array) for a bare JSON array, else the key holding the rows (V(items), V(data), ...).
      type: str
    pagination:
      description: How the next page is found (V(link), V(link_header), V(cursor), V(page_total), V(offset_total)),
        or V(none) on a single page.
      type: str
    page_keys:
      description: The keys beside the rows.
      type: list
      elements: str
    rows_on_page:
      description: Rows on the first page.
      type: int
    total:
      description: The total the portal gave, if any.
      type: int
    row_keys:
      description: Every key seen in the rows.
      type: list
      elements: str
    spellings:
      description: Per role (V(id), V(label), V(pause)), which key held it and in how many rows; V(extra_id) names an
        id the portal sends beside the path id (an integer V(id) beside V(client_id)), kept out of paths.
      type: dict
      sample: {id: {client_id: 2}, label: {name: 2}, pause: {"enabled (inverted)": 2}}
subscribers:
  description: The first list page of read-only subscribers, as for RV(clients) (spellings of V(id) and V(label)).
  returned: always
  type: dict
rate_limit:
  description: The rate-limit headers of the last answer, and what they mean.
  returned: always
  type: dict
  contains:
    headers:
      description: The headers as received (C(X-RateLimit-*), C(RateLimit-*), C(RateLimit), C(RateLimit-Policy), C(Retry-After)).
      type: dict
    remaining:
      description: Requests left in the window (the hourly budget is 5000 per token); null when not said.
      type: int
    reset_seconds:
      description: Seconds until the window resets, whether the header gave seconds, a Unix time or an HTTP date; null
        when not said.
      type: int
    limit:
      description: Requests per window (C(X-RateLimit-Limit), C(RateLimit-Limit), the C(RateLimit) header's C(limit), or
        C(RateLimit-Policy)); null when not said.
      type: int
    window_seconds:
      description: The window's length from C(RateLimit-Policy) (C(w=)); null when not said.
      type: int
requests:
  description: Requests this probe sent.
  returned: always
  type: int
"""

import time
from collections import Counter

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.isr.mqtt.plugins.module_utils import _reader
from ansible_collections.isr.mqtt.plugins.module_utils._portal import (
    API_PATH, PortalError, base_url, client_from_module, portal_argument_spec)

DOC_PATHS = ("/docs", "/openapi.json")
ID_FIELDS = ("client_id", "id", "username")


def resolve(spec, schema, depth=0):
    """A schema with its $ref (and a single allOf/anyOf branch with properties) followed."""
    for dummy in range(10):
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target = spec
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            schema = target
            continue
        for key in ("allOf", "anyOf", "oneOf"):
            branches = [resolve(spec, b, depth) for b in schema.get(key) or []]
            with_props = [b for b in branches if b.get("properties")]
            if with_props:
                merged = {}
                for branch in with_props:
                    merged.update(branch["properties"])
                return {"properties": merged}
        return schema
    return {}


def fields(spec, schema, prefix="", depth=0):
    """Dotted names of every property of a schema, nested objects included (3 levels)."""
    schema = resolve(spec, schema)
    names = []
    for name, sub in sorted((schema.get("properties") or {}).items()):
        path = prefix + name
        names.append(path)
        if depth < 3:
            names.extend(fields(spec, sub, path + ".", depth + 1))
    return names


def json_schema(holder):
    content = (holder or {}).get("content") or {}
    media = content.get("application/json") or next(iter(content.values()), {})
    return (media or {}).get("schema") or {}


def operation(spec, suffix, method):
    for path, item in (spec.get("paths") or {}).items():
        if path.rstrip("/").endswith(suffix) and isinstance(item, dict) and isinstance(item.get(method), dict):
            return item[method]
    return {}


def response_fields(spec, op):
    responses = op.get("responses") or {}
    for status in ("201", "200", "202"):
        if status in responses:
            return fields(spec, json_schema(responses[status]))
    return []


def describe_api(spec, source):
    info = spec.get("info") or {}
    create = operation(spec, "/publishers", "post")
    rotate = next((operation(spec, p, "post") for p in (spec.get("paths") or {}) if p.rstrip("/").endswith("/rotate-credentials")), {})
    create_fields = response_fields(spec, create)
    rotate_fields = response_fields(spec, rotate)
    return {
        "source": source, "title": info.get("title"), "version": info.get("version"),
        "openapi": spec.get("openapi") or spec.get("swagger"),
        "paths": sorted(spec.get("paths") or {}),
        "create_request_fields": fields(spec, json_schema(create.get("requestBody"))),
        "create_response_fields": create_fields,
        "create_password_fields": [f for f in create_fields if "password" in f.split(".")[-1]],
        "create_id_fields": [f for f in create_fields if f.split(".")[-1] in ID_FIELDS],
        "rotate_response_fields": rotate_fields,
        "rotate_password_fields": [f for f in rotate_fields if "password" in f.split(".")[-1]],
    }


class Probe(object):
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.problems = []  # what the reader does not understand: the other modules refuse to write
        self.notes = []  # what is missing but does not stop them
        self.result = {"token": "unknown", "mgmt_addon": None, "api": describe_api({}, None),
                       "clients": {}, "subscribers": {}}

    def read_api(self):
        """The OpenAPI document from /docs (JSON, or the URL in its Swagger UI page) or /openapi.json."""
        tried = []
        for path in DOC_PATHS:
            url = API_PATH + path
            try:
                response, spec = self.client.get_json(path, "the OpenAPI document")
            except PortalError as err:
                tried.append("%s: %s" % (url, "HTTP %s" % err.status if err.status else err.kind))
                continue
            if spec is None:
                tried.append("%s: not JSON (%s)" % (url, response.headers.get("Content-Type")))
                continue
            if isinstance(spec, dict) and ("openapi" in spec or "swagger" in spec):
                self.result["api"] = describe_api(spec, url)
                return
            tried.append("%s: JSON without an openapi version" % url)
        self.notes.append("No OpenAPI document found (%s); shapes below come from the list pages only." % "; ".join(tried))

    def read_list(self, path, what, spell):
        report = {"status": None}
        try:
            response, body, page = self.client.list_page(path, what)
        except PortalError as err:
            report["status"] = err.status
            return report, err
        except _reader.ShapeError as exc:  # answered (2xx), in a shape the reader refuses
            report["status"] = 200
            self.problems.append("%s: %s" % (what, exc.msg))
            return report, None
        report["status"] = 200
        report.update(envelope=page.envelope, pagination=page.pagination, rows_on_page=len(page.rows), total=page.total,
                      page_keys=sorted(k for k in body if k != page.envelope) if isinstance(body, dict) else [],
                      row_keys=sorted(set(k for r in page.rows if isinstance(r, dict) for k in r)))
        spellings, failures = {}, Counter()
        for row in page.rows:
            try:
                for role, key in spell(row).items():
                    spellings.setdefault(role, Counter())[key] += 1
            except _reader.ShapeError as exc:
                failures[exc.msg] += 1
        report["spellings"] = dict((role, dict(counts)) for role, counts in spellings.items())
        for msg, count in sorted(failures.items()):
            self.problems.append("%s: %d row(s): %s" % (what, count, msg))
        return report, None

    def read_clients(self):
        report, err = self.read_list("/publishers", "MQTT clients", _reader.client_spellings)
        self.result["clients"] = report
        if err is None:
            self.result.update(token="accepted", mgmt_addon=True)
            return None
        if err.kind == "auth":
            self.result["token"] = "rejected"
        elif err.kind == "addon":
            self.result.update(token="accepted", mgmt_addon=False)
        return err

    def read_subscribers(self):
        report, err = self.read_list("/subscriber-mqtt-passwords", "read-only subscribers", _reader.subscriber_spellings)
        self.result["subscribers"] = report
        if err is not None:
            self.problems.append("read-only subscribers: %s" % err.msg)

    def rate_limit(self):
        headers = dict(self.client.rate_headers)
        limits = _reader.rate_limit_of(headers, time.time())
        if not headers:
            self.notes.append("No rate-limit headers (X-RateLimit-*, RateLimit-* or RateLimit) on the last answer; "
                              "the collection then learns of the limit only from a 429.")

        def whole(value):
            return None if value is None else int(round(value))
        return {"headers": headers, "remaining": whole(limits["remaining"]), "reset_seconds": whole(limits["reset"]),
                "limit": whole(limits["limit"]), "window_seconds": whole(limits["window"])}

    def run(self):
        self.read_api()
        err = self.read_clients()
        if err is None:
            self.read_subscribers()
        self.result.update(rate_limit=self.rate_limit(), requests=self.client.stats["requests"],
                           problems=self.problems, notes=self.notes, understood=err is None and not self.problems, changed=False)
        if err is not None:
            self.module.fail_json(**err.to_fail_kwargs(**self.result))
        self.module.exit_json(**self.result)


def check_portal_url(module):
    """Fail with the problem, before any request, when portal_url cannot be the portal's address (no scheme, no
    host, or a part of the API path such as /api/v1 that would be doubled)."""
    if not module.params.get("portal_url"):
        return  # client_from_module says that it is required
    try:
        base_url(module.params["portal_url"])
    except PortalError as err:
        result = {"token": "unknown", "mgmt_addon": None, "api": describe_api({}, None), "clients": {}, "subscribers": {},
                  "rate_limit": {"headers": {}, "remaining": None, "reset_seconds": None}, "requests": 0,
                  "problems": [err.msg], "notes": [], "understood": False, "changed": False}
        module.fail_json(**err.to_fail_kwargs(**result))


def main(module_class=AnsibleModule):
    """The module; its action plugin runs the same code in the controller's worker with another module_class."""
    module = module_class(argument_spec=portal_argument_spec(), supports_check_mode=True)
    check_portal_url(module)
    client = client_from_module(module)
    client.max_retries = 0  # a probe reports what it meets; it does not insist
    Probe(module, client).run()


if __name__ == "__main__":
    main()
