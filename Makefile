.PHONY: run test
# Run the product: web, worker, beat (and the model server), with a demo project.
run:
	@bash scripts/run.sh

# Run the whole test suite against PostgreSQL and Redis (what CI runs).
test:
	@bash scripts/test.sh
