# make fuzz: the property-based fuzz tests (metadata, route and auth parsing; frames behind a
# request on a live gateway)
# (test/fuzz/*.test.ts, fast-check) with many more runs per property than `make test` gives
# them (there FUZZ_RUNS defaults to 2000). FUZZ_RUNS=N sets the runs per property;
# FUZZ_SEED=S replays the run fast-check reported with a failure.
FUZZ_RUNS ?= 200000

.PHONY: fuzz
fuzz: deps
	FUZZ_RUNS=$(FUZZ_RUNS) $(if $(FUZZ_SEED),FUZZ_SEED=$(FUZZ_SEED)) tap --timeout 3600 test/fuzz/*.test.ts
