# -*- coding: utf-8 -*-
# Copyright (c) isr.mqtt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""isr.mqtt.portal_info names a portal_url that holds a part of the API path as its problem, before any request."""

from __future__ import annotations

import pytest

from ansible_collections.isr.mqtt.plugins.modules import portal_info


@pytest.mark.parametrize("suffix", ["/api", "/api/v1/"])
def test_a_doubled_api_path_is_the_probes_problem(run_module, emulator, suffix):
    emulator.control.reset_counters()
    failed, result = run_module(portal_info, portal_url=emulator.url + suffix)
    assert failed and result["understood"] is False
    assert result["problems"] == [result["msg"]]
    assert result["msg"].startswith("portal_url %s%s " % (emulator.url, suffix))
    assert "give the portal's origin only, for example %s " % emulator.url in result["msg"]
    assert result["requests"] == 0 and result["token"] == "unknown" and result["error"]["kind"] == "validation"
    assert emulator.control.counters()["total"] == 0


def test_the_full_api_path_still_probes(run_module, emulator):
    failed, result = run_module(portal_info, portal_url=emulator.url + "/api/v1/subscriber/")
    assert not failed and result["understood"] is True and result["problems"] == []
