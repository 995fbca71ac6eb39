# The plan summary: what the config's GPU training jobs will cost (jobs, GPU-hours asked
# and expected, peak memory), printed before any job starts on every run and dry run of
# a config that has such jobs (resdepth/plan.py). Jobs a scheduler runs print nothing.
from resdepth import plan

if workflow.is_main_process:
    PLAN_SUMMARY = plan.summary(config)
    if PLAN_SUMMARY:
        print(PLAN_SUMMARY, file=sys.stderr)
