"""The orchestrator application: configuration, command line and (to come) the
saga engine and its Ray actors."""
