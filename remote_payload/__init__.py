"""orch's training payload: what runs on the GPU instance (`python -m remote_payload.<module>`).

Only the packages pinned in `remote_payload/requirements.txt` and the standard library are used; the controller
package `orchestrator` is never imported. `probe.py` and `supervise.py` are standalone stdlib scripts.
"""
