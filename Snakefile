# cytotrail: segment -> track -> quantify -> cluster -> report, for every sample of the sheet.
# Wiring only: the rules live in workflow/rules/, the science in the cytotrail package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/quantify.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/train.smk"


report: "workflow/report/workflow.rst"


localrules:
    all,
    report_html,


rule all:
    default_target: True
    input:
        final_outputs(),
