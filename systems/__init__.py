"""esper-arbiter systems: drop these into an esper world (see ``systems.plugin.install``)."""
