"""Sweeps across a fleet: a base job, a grid of overrides, runs placed on free GPUs of several instances.

spec.py (the SPEC.yaml and its points), placement.py (which pending point goes on which free GPUs; when a run
counts as lost), board.py (the status table rebuilt from the runs on the instances) are pure and tested fast;
controller.py is the loop that observes the fleet, claims points (remote_payload/sweepclaim.py on the home
instance) and starts runs through orchestrator/launch.py.
"""
