"""A dnnpart plugin that cannot be imported (for dnnpart's own tests)."""

raise ImportError("dnnpart-broken needs libbroken.so, which is not installed")
