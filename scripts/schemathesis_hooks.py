"""Schemathesis hooks for scripts/schemathesis.sh.

Site ids come from configuration, so the document cannot list them: a
generated `site` or `from` is almost never one, and every create or exchange
would stop at `400 site_unknown`. These hooks name a real site of the test
bridge in two cases out of three, so the later checks (and, through the
document's links, reads, patches and deletes of real sessions) are reached.
"""

import schemathesis
from hypothesis import strategies as st

SITES = ["account", "shop"]
FIELDS = {("POST", "/api/v1/sessions"): "site", ("POST", "/bridge/exchange"): "from"}


@schemathesis.hook
def flatmap_body(context, body):
    operation = context.operation
    field = operation and FIELDS.get((operation.method.upper(), operation.path))
    if field is None or not isinstance(body, dict) or not isinstance(body.get(field), str):
        return st.just(body)
    return st.sampled_from(SITES + [body[field]]).map(lambda site: {**body, field: site})
