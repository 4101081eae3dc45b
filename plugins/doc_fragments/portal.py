# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):

    # Connection options shared by every module (isr.mqtt.portal).
    DOCUMENTATION = r'''
options:
  portal_url:
    description:
      - URL of the iShareRadio MQTT SaaS portal, for example V(https://mqtt.ishareradio.com).
      - The origin is enough; a URL that already ends in C(/api/v1/subscriber) is accepted too. A URL that holds another
        part of the API path (C(/api), C(/api/v1), C(/api/v1/subscriber/publishers)) is refused before any request, since
        the API path would be appended to it.
      - Must start with C(https://). Plain C(http://) is accepted only to this machine (C(localhost), C(127.0.0.1), C(::1)),
        or with O(allow_http=true).
      - If not set, the value of the E(ISR_PORTAL_URL) environment variable is used.
        The module fails when neither is set.
    type: str
  api_token:
    description:
      - Mgmt REST API token of the portal account, a string (starts with C(isr_mqtt_rest_)), made in the portal under
        B(Settings > REST API tokens). The account needs the B(Mgmt REST API) add-on, enabled under B(Subscriptions).
      - "Sent as C(Authorization: Bearer) header; never logged or returned."
      - Surrounding whitespace is removed (a token read from a file or made with C(ansible-vault encrypt_string) often
        ends in a newline); a token with whitespace or control characters inside it is refused.
      - If not set, the value of the E(ISR_PORTAL_TOKEN) environment variable is used.
        The module fails when neither is set.
      - This is an HTTP token; never use it as an MQTT password.
    type: raw
  validate_certs:
    description:
      - Whether to verify the portal's TLS certificate.
      - Set to V(false) only for a test portal; the module warns when it is off.
    type: bool
    default: true
  ca_path:
    description:
      - Path to a CA bundle (PEM) used to verify the portal's TLS certificate, for a portal behind a private CA
        or a TLS-inspecting proxy. Ignored when O(validate_certs=false).
      - When not set, the CA bundle of the Python C(requests) library (or E(REQUESTS_CA_BUNDLE)) is used.
    type: path
  allow_http:
    description:
      - Allow a plain C(http://) O(portal_url) to a host that is not this machine. The API token then crosses the
        network unencrypted; the module warns. For a test portal on a network you trust only.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for the portal to answer one HTTP request, from 1 to 3600.
    type: int
    default: 30
  rate_limit_max_wait:
    description:
      - Ceiling, in seconds, on the total time the module waits because of the portal's rate limit
        (5000 requests per hour per token), from 0 to 86400.
      - On HTTP 429 the module waits for C(Retry-After), and when C(X-RateLimit-Remaining) reaches 0 it waits for
        C(X-RateLimit-Reset) before the next request; it warns each time it waits.
      - When a wait would exceed what is left of this ceiling, the module fails at once with a rate-limit error
        instead of waiting. V(0) never waits.
    type: int
    default: 300
notes:
  - Network errors and HTTP 502/503/504 are retried with jittered exponential backoff. Creating a client and rotating
    a password are not repeated blindly after an ambiguous failure; see the module documentation for recovery.
  - Runs on the controller (or wherever the task is delegated) and needs the Python C(requests) library there.
requirements:
  - requests
'''
