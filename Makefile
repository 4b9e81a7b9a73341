.PHONY: run test flywheel
# Run the product: web, worker, beat (and the model server), with a demo project.
run:
	@bash scripts/run.sh

# Run the whole test suite against PostgreSQL and Redis (what CI runs).
test:
	@bash scripts/test.sh

# The whole loop on this machine through the API and the CLI: project, import, drafts, scripted
# annotators, critiques, SFT+DPO snapshot, LoRA finetune, eval run with the judge, leaderboard,
# a misbehaviour report triaged into new tasks. Its own database (labelwork_flywheel, recreated).
flywheel:
	@bash scripts/flywheel.sh
