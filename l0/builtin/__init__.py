"""The kernel's builtin plugins, loaded through the same path as third-party plugins."""
