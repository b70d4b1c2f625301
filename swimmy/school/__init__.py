"""The school: ranks, breeding, the OOS requester, the WFV scheduler and the school loop."""
