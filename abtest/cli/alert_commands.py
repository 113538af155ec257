"""``abtest alerts`` and ``abtest webhooks add | list | remove | deliveries``: the monitor's
alerts and their webhooks, over the HTTP API like the other release-manager commands
(``$ABTEST_URL`` / ``--url`` and ``$ABTEST_API_KEY``, see `abtest.cli.lifecycle_commands`).

A webhook's secret is read from ``$ABTEST_WEBHOOK_SECRET`` when it is set (so it stays out
of the shell history); otherwise the service generates one, printed once.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any
from urllib.parse import quote, urlencode

from abtest.cli.lifecycle_commands import _call, _service_arguments

SECRET_VARIABLE = "ABTEST_WEBHOOK_SECRET"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alerts`` and ``webhooks``."""
    alerts = subparsers.add_parser("alerts", help="the monitor's alerts (active by default)")
    alerts.add_argument("--experiment", help="only this experiment's alerts")
    alerts.add_argument("--all", action="store_true", help="resolved alerts too")
    alerts.add_argument("--since", help="only alerts active since this ISO 8601 time")
    _service_arguments(alerts)
    alerts.set_defaults(handler=_alerts)

    webhooks = subparsers.add_parser("webhooks", help="where alerts are sent")
    actions = webhooks.add_subparsers(dest="action", metavar="ACTION", required=True,
                                      parser_class=type(webhooks))  # fmt: skip
    add = actions.add_parser("add", help=f"register a webhook (secret: ${SECRET_VARIABLE}, "
                             "else generated and printed once)")  # fmt: skip
    # Not "url": that is the service's (--url, from _service_arguments).
    add.add_argument("target", metavar="URL", help="http(s) URL that receives the JSON POSTs")
    add.add_argument("--min-severity", choices=("warning", "critical"), default="warning")
    add.add_argument("--kind", action="append", default=[], dest="kinds",
                     help="only alerts of this kind (repeatable; default all)")  # fmt: skip
    add.add_argument("--experiment", action="append", default=[], dest="experiments",
                     help="only this experiment's alerts (repeatable; default all)")  # fmt: skip
    add.add_argument("--description", default="", help="a note shown in listings")
    _service_arguments(add)
    add.set_defaults(handler=_add)
    listing = actions.add_parser("list", help="every webhook with its deliveries by status")
    _service_arguments(listing)
    listing.set_defaults(handler=_list)
    for name, text, handler in (("remove", "remove a webhook", _remove),
                                ("deliveries", "a webhook's deliveries", _deliveries)):  # fmt: skip
        action = actions.add_parser(name, help=text)
        action.add_argument("webhook", help="webhook id (see 'abtest webhooks list')")
        _service_arguments(action)
        action.set_defaults(handler=handler)


def _print_json(answer: Any) -> int:
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0


def _alerts(args: argparse.Namespace) -> int:
    query: dict[str, str] = {"status": "all" if args.all else "active"}
    if args.since:
        query["since"] = args.since
    if args.experiment:
        path = f"/v1/experiments/{quote(args.experiment, safe='')}/alerts"
    else:
        path = "/v1/alerts"
    answer = _call(args, "GET", f"{path}?{urlencode(query)}")
    if args.json:
        return _print_json(answer)
    if not answer["alerts"]:
        print(f"no {'' if args.all else 'active '}alerts")
    for alert in answer["alerts"]:
        if alert["status"] == "resolved":
            when = f"resolved {alert['resolved_at']}"
            mark = "resolved"
        else:
            when = f"since {alert['first_seen']}, last {alert['last_seen']}"
            mark = alert["severity"].upper()
        print(f"{mark:<9} {alert['experiment']}  {alert['kind']} ({alert['subject']})  {when}"
              f"  [{alert['id']}]\n          {alert['message']}")  # fmt: skip
    return 0


def _add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"url": args.target, "min_severity": args.min_severity,
                            "kinds": args.kinds, "experiments": args.experiments,
                            "description": args.description}  # fmt: skip
    secret = os.environ.get(SECRET_VARIABLE)
    if secret:
        body["secret"] = secret
    answer = _call(args, "POST", "/v1/webhooks", body)
    if args.json:
        return _print_json(answer)
    print(f"{answer['id']}: sends {answer['min_severity']} and above to {answer['url']}")
    if "secret" in answer:
        print(f"secret (shown once; verify X-Abtest-Signature with it): {answer['secret']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    answer = _call(args, "GET", "/v1/webhooks")
    if args.json:
        return _print_json(answer)
    if not answer["webhooks"]:
        print("no webhooks")
    for hook in answer["webhooks"]:
        counts = hook["deliveries"]
        only = [f"kinds {', '.join(hook['kinds'])}"] if hook["kinds"] else []
        only += [f"experiments {', '.join(hook['experiments'])}"] if hook["experiments"] else []
        print(f"{hook['id']}  {hook['url']}  {hook['min_severity']}+"
              + "".join(f"; {o}" for o in only)
              + f"  deliveries: {counts.get('delivered', 0)} delivered, "
              f"{counts.get('failed', 0)} failed, {counts.get('pending', 0)} pending")  # fmt: skip
    return 0


def _remove(args: argparse.Namespace) -> int:
    answer = _call(args, "DELETE", f"/v1/webhooks/{quote(args.webhook, safe='')}")
    if args.json:
        return _print_json(answer)
    print(f"removed {answer['id']} ({answer['url']})")
    return 0


def _deliveries(args: argparse.Namespace) -> int:
    answer = _call(args, "GET", f"/v1/webhooks/{quote(args.webhook, safe='')}/deliveries")
    if args.json:
        return _print_json(answer)
    if not answer["deliveries"]:
        print("no deliveries")
    for d in answer["deliveries"]:
        status = d["status"] + (f" (next {d['next_attempt_at']})" if d["status"] == "pending"
                                and d["attempts"] else "")  # fmt: skip
        error = f"  {d['last_error']}" if d["last_error"] else ""
        print(f"{d['id']}  {d['event']}  {d['experiment']}  {status}  "
              f"{d['attempts']} attempt(s), last {d['last_attempt_at'] or '-'}{error}")  # fmt: skip
    return 0
