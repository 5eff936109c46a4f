# Run with: taskbox run examples/workflow_data.py --items examples/orders.json \
#               --context examples/context.json --mode each
customer = _("Customers").item["json"]          # paired back through "Orders"
_execution.customData.set("last_order", _json["order"])
stats = _getWorkflowStaticData("global")
stats["runs"] = stats.get("runs", 0) + 1
return {
    "order": _json["order"],
    "customer": customer["name"],
    "customers": len(_("Customers").all()),
    "workflow": _workflow.name,
    "execution": [_execution.id, _execution.mode],
    "region": _vars["region"],
    "today": _today.isoformat(),
}
