# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""portal_url with a part of the API path (issue 24): refused before any request, with the origin to give instead."""

from __future__ import annotations

import pytest

from ansible_collections.isr.mqtt.plugins.module_utils._portal import PortalClient, PortalError, base_url

TOKEN = "isr_mqtt_rest_url-unit-token"
ORIGIN = "https://portal.test"


@pytest.mark.parametrize("path", ["/api", "/api/", "/api/v1", "/api/v1/", "/API/v1", "/api/v1/subscriber/publishers",
                                  "/api/v2", "/api/v1/subscriber/api/v1/subscriber", "/proxy/api/v1"])
def test_a_part_of_the_api_path_is_refused_and_the_origin_named(path):
    with pytest.raises(PortalError) as info:
        base_url(ORIGIN + path)
    msg = info.value.msg
    assert info.value.kind == "validation"
    assert msg.startswith("portal_url %s%s " % (ORIGIN, path))
    assert "give the portal's origin only, for example %s " % ORIGIN in msg


def test_the_message_says_what_would_be_doubled():
    with pytest.raises(PortalError) as info:
        base_url(ORIGIN + "/api/v1/")
    assert "ends in /api/v1, a part of the API path: /api/v1/subscriber would be appended to it" in info.value.msg


def test_the_origin_in_the_message_leaves_out_user_info():
    with pytest.raises(PortalError) as info:
        base_url("https://user:secret@portal.test:8443/api")
    assert "for example https://portal.test:8443 " in info.value.msg


@pytest.mark.parametrize("given, base", [
    (ORIGIN, ORIGIN + "/api/v1/subscriber"),
    (ORIGIN + "/api/v1/subscriber/", ORIGIN + "/api/v1/subscriber"),
    (ORIGIN + "/mqtt-portal/", ORIGIN + "/mqtt-portal/api/v1/subscriber"),  # a portal behind a path prefix
    (ORIGIN + "/apis", ORIGIN + "/apis/api/v1/subscriber"),
])
def test_the_origin_and_the_full_api_path_are_accepted(given, base):
    assert base_url(given) == base


def test_the_client_refuses_it_before_any_session_exists():
    with pytest.raises(PortalError) as info:
        PortalClient(ORIGIN + "/api/v1", TOKEN)
    assert "portal_url" in info.value.msg and TOKEN not in info.value.msg
