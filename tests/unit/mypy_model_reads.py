"""A mypy plugin for ``test_model_fields``: it records every read of a field of a class of
``fastproxy.config.model``, with the file it is in, into the file ``$FASTPROXY_MODEL_READS`` names.

mypy knows the type of each expression, so ``bind.maxconn`` counts for ``Bind.maxconn`` only, however the
variable is named, and ``server.maxconn`` does not count for it.  Loaded by path from the test's mypy
configuration; not a test module itself.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from mypy.plugin import AttributeContext, Plugin
from mypy.types import Type

MODEL = "fastproxy.config.model."


class ModelReads(Plugin):
    def get_attribute_hook(self, fullname: str) -> Optional[Callable[[AttributeContext], Type]]:
        if not fullname.startswith(MODEL):
            return None
        field = fullname[len(MODEL):]

        def record(ctx: AttributeContext) -> Type:
            if not getattr(ctx, "is_lvalue", False):  # older mypy: every access counts
                with open(os.environ["FASTPROXY_MODEL_READS"], "a") as out:
                    out.write(f"{field} {ctx.api.path}\n")
            return ctx.default_attr_type
        return record


def plugin(version: str) -> type[Plugin]:
    return ModelReads
