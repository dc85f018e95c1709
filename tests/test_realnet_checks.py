"""SPF, DKIM and Authentication-Results through the realnet DNS; OpenDKIM as independent judge."""

from __future__ import annotations

import email
import email.policy
import random
import re
import shutil
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailgate.realnet.addresses import host_name
from mailgate.realnet.services.checks import (
    SPF_RESULTS,
    DkimResult,
    authentication_results,
    check_spf,
    lookup_mx,
    sign_dkim,
    verify_dkim,
)
from mailgate.realnet.services.dnsserver import make_resolver, run_dns_in_thread
from mailgate.realnet.services.keys import DkimKey
from mailgate.realnet.services.zone import build_zone

pytestmark = pytest.mark.realnet

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def domain(scenario):
    return scenario.population.domains[0]


@pytest.fixture(scope="module", params=["rsa-sha256", "ed25519-sha256"])
def key(request, scenario, domain):
    return DkimKey.generate(request.param, scenario.realnet.dkim_selector, domain)


@pytest.fixture
def dead_resolver():
    """A resolver whose server does not exist: every lookup times out quickly."""
    return make_resolver("127.0.0.1", 9, timeout=0.2)


def message(domain: str, body: bytes = b"Hello.\r\n.leading dot\r\n") -> bytes:
    return (
        f"From: Self Test <selftest@{domain}>\r\n"
        f"To: selftest@{domain}\r\n"
        "Subject: mail to yourself\r\n"
        "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <probe-1@{domain}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
    ).encode() + body


# ---------------------------------------------------------------- SPF


def test_spf_pass_for_authorised_and_fail_for_other_addresses(plan, resolver):
    sender = plan.remote_sender_address("bigmail.example")
    result, _ = check_spf(resolver, sender, "alice@bigmail.example", "mta.bigmail.example")
    assert result == "pass"
    result, explanation = check_spf(
        resolver, "127.25.77.77", "alice@bigmail.example", "mta.bigmail.example"
    )
    assert result == "fail" and explanation


def test_spf_fail_domain_fails_from_its_own_senders(scenario, plan, resolver):
    (failing,) = [d.name for d in scenario.internet.domains if d.spf == "fail"]
    sender = plan.remote_sender_address(failing)
    assert check_spf(resolver, sender, f"x@{failing}", f"mta.{failing}")[0] == "fail"


def test_our_spf_passes_outbound_gateways_only(scenario, plan, domain, resolver):
    for name, tier in scenario.tiers.items():
        expected = "pass" if tier.role in ("outbound_sign", "fallback_mx") else "fail"
        for address in plan.tier_addresses(name):
            assert check_spf(resolver, address, f"u@{domain}", "x")[0] == expected, name


def test_bounce_is_checked_against_helo(scenario, plan, resolver):
    host = f"{next(n for n, t in scenario.tiers.items() if t.role == 'outbound_sign')}.0"
    helo = host_name(plan, host)
    assert check_spf(resolver, plan.host_address(host), "", helo)[0] == "pass"
    assert check_spf(resolver, "127.25.77.77", "", helo)[0] == "fail"


def test_spf_none_and_temperror(resolver, dead_resolver):
    # A domain that does not exist publishes no policy.
    assert check_spf(resolver, "127.25.77.77", "a@no-such-domain.example", "x")[0] == "none"
    result, _ = check_spf(dead_resolver, "127.25.77.77", "a@bigmail.example", "x")
    assert result == "temperror"


def test_spf_uses_the_given_resolver_per_thread_without_deprecation_warning(
    plan, resolver, dead_resolver
):
    sender = plan.remote_sender_address("bigmail.example")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(4) as pool:
            jobs = [
                pool.submit(check_spf, r, sender, "a@bigmail.example", "mta.bigmail.example")
                for r in [resolver, dead_resolver, resolver, dead_resolver]
            ]
            results = [j.result()[0] for j in jobs]
    assert results == ["pass", "temperror", "pass", "temperror"]
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert set(results) <= set(SPF_RESULTS)


# ---------------------------------------------------------------- DKIM


def test_signed_message_verifies(domain, key, resolver):
    signed = sign_dkim(message(domain), key)
    assert signed.endswith(message(domain))  # the header is prepended, nothing else changes
    parsed = email.message_from_bytes(signed, policy=email.policy.default)
    signed_headers = {h.strip() for h in re.sub(r"\s+", "", parsed["DKIM-Signature"]).split(";")}
    tags = dict(t.split("=", 1) for t in signed_headers if "=" in t)
    assert {"from", "to", "subject", "date", "message-id"} <= set(tags["h"].split(":"))
    assert tags["a"] == key.algorithm and tags["d"] == domain and tags["s"] == key.selector
    assert verify_dkim(signed, resolver) == [
        DkimResult("pass", domain, key.selector, key.algorithm)
    ]


def test_relays_may_prepend_headers(domain, key, resolver):
    signed = sign_dkim(message(domain), key)
    relayed = b"Received: from gw3 by gw0; Fri, 27 Nov 2026 10:00:01 +0000\r\n" + signed
    assert [r.result for r in verify_dkim(relayed, resolver)] == ["pass"]


def test_tampering_fails(domain, key, resolver):
    signed = sign_dkim(message(domain), key)
    body = signed.replace(b"Hello.", b"Hullo.")
    subject = signed.replace(b"Subject: mail to yourself", b"Subject: mail to someone")
    for tampered in (body, subject):
        (result,) = verify_dkim(tampered, resolver)
        assert result.result == "fail", result


def test_every_signature_is_verified(scenario, domain, key, resolver):
    other = DkimKey.generate("ed25519-sha256", "unpublished", domain)
    twice = sign_dkim(sign_dkim(message(domain), key), other)
    results = verify_dkim(twice, resolver)
    # Topmost first: the unpublished key's signature cannot be checked, ours passes.
    assert [(r.result, r.selector) for r in results] == [
        ("permerror", "unpublished"),
        ("pass", key.selector),
    ]


def test_no_signature_and_dns_failure(domain, key, resolver, dead_resolver):
    assert verify_dkim(message(domain), resolver) == []
    (result,) = verify_dkim(sign_dkim(message(domain), key), dead_resolver)
    assert result.result == "temperror"


def test_lf_only_message_signs_and_verifies(domain, key, resolver):
    lf = message(domain).replace(b"\r\n", b"\n")
    signed = sign_dkim(lf, key)
    assert b"\r\n" not in signed
    assert [r.result for r in verify_dkim(signed, resolver)] == ["pass"]


# ---------------------------------------------------------------- Authentication-Results


def test_authentication_results_format(domain, key, resolver):
    results = verify_dkim(sign_dkim(message(domain), key), resolver)
    value = authentication_results(
        "gw0-1.example", ("pass", "ok"), results, mail_from=f"selftest@{domain}"
    )
    assert value == (
        f"gw0-1.example; spf=pass smtp.mailfrom=selftest@{domain}; "
        f"dkim=pass header.d={domain} header.s={key.selector} header.a={key.algorithm}"
    )
    none = authentication_results("mx", "fail", [], helo="mta.x.example")
    assert none == "mx; spf=fail smtp.helo=mta.x.example; dkim=none"
    quoted = authentication_results("mx", "pass", [], mail_from='"odd local"@x.example')
    assert 'smtp.mailfrom="\\"odd local\\"@x.example"' in quoted
    failed = authentication_results("mx", None, [DkimResult("fail", "d.example", "s", "a", "x")])
    assert failed == "mx; dkim=fail (x) header.d=d.example header.s=s header.a=a"


def test_lookup_mx(scenario, plan, domain, resolver):
    ours = lookup_mx(resolver, domain)
    assert {a for _, _, addrs in ours for a in addrs} == set(plan.tier_addresses(scenario.mx))
    assert len({p for p, _, _ in ours}) == 1
    assert lookup_mx(resolver, "bigmail.example")[0][2] == [
        plan.remote_mx_address("bigmail.example")
    ]


# ---------------------------------------------------------------- OpenDKIM


@pytest.fixture
def port53_dns(scenario, plan, key):
    """The realnet DNS on port 53 of a random loopback address (OpenDKIM's Nameservers)."""
    zone = build_zone(scenario, plan, key.public_txt)
    rng = random.Random()
    last: Exception | None = None
    for _ in range(10):
        address = f"127.53.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
        try:
            with run_dns_in_thread(zone, address, 53) as srv:
                yield srv
                return
        except PermissionError:
            pytest.skip("binding port 53 needs root")
        except OSError as e:  # address taken by a parallel run: try another
            last = e
    raise RuntimeError(f"no loopback address with a free port 53: {last}")


@pytest.mark.skipif(shutil.which("opendkim") is None, reason="Debian opendkim not installed")
def test_opendkim_verifies_our_signature(tmp_path, domain, key, port53_dns):
    """OpenDKIM (``opendkim -t FILE -x CONF``) looks our key up through ``Nameservers``."""
    conf = tmp_path / "opendkim.conf"
    conf.write_text(f"Mode v\nNameservers {port53_dns.address}\nSyslog no\n")
    signed = sign_dkim(message(domain), key)
    verdicts = {}
    for name, data in [("good", signed), ("tampered", signed.replace(b"Hello.", b"Hullo."))]:
        path = tmp_path / f"{name}.eml"
        path.write_bytes(data)
        queries = port53_dns.queries
        run = subprocess.run(
            ["opendkim", "-vv", "-t", str(path), "-x", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0, run.stderr
        assert port53_dns.queries > queries  # the key came from our server
        match = re.search(r"\bdkim=(\w+)", run.stdout)
        assert match, run.stdout + run.stderr
        verdicts[name] = match.group(1)
    assert verdicts == {"good": "pass", "tampered": "fail"}


def test_malformed_input_is_permerror_never_an_exception(domain, key, resolver):
    garbage = [
        b"DKIM-Signature: garbage\r\nFrom: a@x.example\r\n\r\nbody\r\n",
        b"\x00\xff not a message",
    ]
    for data in garbage:
        assert [r.result for r in verify_dkim(data, resolver)] == ["permerror"]
    assert check_spf(resolver, "not-an-ip", "a@bigmail.example", "x")[0] == "permerror"
    # Without a From header there is nothing to sign (RFC 6376): passed on unsigned.
    no_from = b"To: b@x.example\r\nSubject: s\r\n\r\nbody\r\n"
    assert sign_dkim(no_from, key) == no_from
