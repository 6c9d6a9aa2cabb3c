# deepfake-ensemble: each stage target depends on the previous stage's outputs.
#   make all                         the whole pipeline on the embedded synthetic dataset
#   make data DATA=path NAME=name    your own face crops (folder, part zips or metadata.json)
#   make test                        set up .venv and run the tests
#   EXECUTOR=dask SCHEDULER=tcp://host:8786 (or local:N) runs faces, features and ensemble chunks on Dask
#   make report SEEDS=3              also trains and fits with 2 more seeds (same data), for the seed spread
#   make transfer FROM=A NAME=B      scores dataset B (prepared from DATA first if need be) with A's models

NAME     ?= synthetic
CONFIG   ?= configs/default.toml
EMBEDDED := data/raw/synthetic
DATA     ?= $(EMBEDDED)
EXECUTOR ?= local
SCHEDULER ?=
SEEDS    ?= 1
RUN_ON   := --executor $(EXECUTOR) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

VENV     := .venv
PYTHON   := $(VENV)/bin/python
SETUP    := $(VENV)/.installed
INTERIM  := data/interim/$(NAME)
FEATURES := data/features/$(NAME)
PREDICT  := data/predictions/$(NAME)
REPORTS  := reports/$(NAME)
# SEEDS is one whole number >= 1: one word, digits only, not starting with 0 (abc, -1 or "2 3" planned no seed run)
SEEDS_NOT_DIGITS := $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst \
	8,,$(subst 9,,$(SEEDS)))))))))))
ifneq ($(words $(SEEDS)):$(strip $(SEEDS_NOT_DIGITS)):$(filter 0%,$(SEEDS)),1::)
$(error SEEDS=$(SEEDS): expected a whole number >= 1 (the seeds of the learned stages, e.g. SEEDS=3))
endif
# seed offsets 1 .. SEEDS-1 of the learned stages: backbones, features and ensemble under data/seeds/K, models/seeds/K
SEED_RUNS := $(if $(filter-out 1,$(SEEDS)),$(shell seq 1 $$(($(SEEDS) - 1))))
SEED_PREDICT := $(foreach k,$(SEED_RUNS),data/seeds/$(k)/predictions/$(NAME)/videos.parquet)

# The embedded dataset is generated; any other DATA is rebuilt when its paths change.
DATA_DEPS := $(if $(filter $(EMBEDDED),$(DATA)),$(EMBEDDED)/metadata.csv,\
	$(wildcard $(DATA) $(addsuffix /metadata*.csv,$(DATA)) $(addsuffix /metadata*.json,$(DATA))))

.PHONY: all setup data faces features ensemble protocols report submission transfer test bench bench-dask bench-scale clean FORCE
.DELETE_ON_ERROR:

all: report submission

setup: $(SETUP)

$(SETUP): requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# synth always runs: it regenerates only when the config's [synth] parameters differ from the folder's, and
# rewrites metadata.csv (so that later stages rebuild) only when its content changes
$(EMBEDDED)/metadata.csv: FORCE | $(SETUP)
	$(PYTHON) -m data synth --out $(EMBEDDED) --config $(CONFIG) --overwrite

FORCE:

$(INTERIM)/videos.parquet: $(DATA_DEPS) $(CONFIG) | $(SETUP)
	$(PYTHON) -m data prepare --data $(DATA) --name $(NAME) --config $(CONFIG)

$(REPORTS)/contact_sheet.png: $(INTERIM)/videos.parquet
	$(PYTHON) -m data sheet --name $(NAME) --out $@

data: $(INTERIM)/videos.parquet $(REPORTS)/contact_sheet.png

# Face crops from raw videos: make faces VIDEOS=<folder of .mp4> NAME=<name> [LABELS=<metadata.json>]
faces: | $(SETUP)
	@test -n "$(VIDEOS)" || { echo "usage: make faces VIDEOS=<folder of videos> NAME=<name> [LABELS=metadata.json]"; exit 2; }
	$(PYTHON) -m data faces --videos $(VIDEOS) --out data/raw/$(NAME) --config $(CONFIG) $(if $(LABELS),--labels $(LABELS)) $(RUN_ON)

$(FEATURES)/.done: $(INTERIM)/videos.parquet
	$(PYTHON) -m extract train --name $(NAME) --config $(CONFIG)
	$(PYTHON) -m extract features --name $(NAME) --config $(CONFIG) $(RUN_ON)
	touch $@

features: $(FEATURES)/.done

$(PREDICT)/videos.parquet: $(FEATURES)/.done
	$(PYTHON) -m ensemble fit --name $(NAME) --config $(CONFIG) $(RUN_ON)

ensemble: $(PREDICT)/videos.parquet

# the frame-budget and backbone-ablation refits, from the feature cache; their sections join the report
$(PREDICT)/protocols.json: $(PREDICT)/videos.parquet
	$(PYTHON) -m ensemble protocols --name $(NAME) --config $(CONFIG) $(RUN_ON)

protocols: $(PREDICT)/protocols.json

$(REPORTS)/metrics.json: $(PREDICT)/videos.parquet $(PREDICT)/protocols.json
	$(PYTHON) -m evaluate report --name $(NAME) --config $(CONFIG)

report: $(REPORTS)/metrics.json $(if $(SEED_RUNS),$(REPORTS)/seeds.json)

data/seeds/%/predictions/$(NAME)/videos.parquet: $(INTERIM)/videos.parquet
	$(PYTHON) -m extract train --name $(NAME) --config $(CONFIG) --seed-offset $* --models models/seeds/$*
	$(PYTHON) -m extract features --name $(NAME) --config $(CONFIG) --models models/seeds/$* \
		--out data/seeds/$*/features $(RUN_ON)
	$(PYTHON) -m ensemble fit --name $(NAME) --config $(CONFIG) --seed-offset $* --models models/seeds/$* \
		--features data/seeds/$*/features --out data/seeds/$*/predictions $(RUN_ON)

$(REPORTS)/seeds.json: $(PREDICT)/videos.parquet $(SEED_PREDICT)
	$(PYTHON) -m evaluate seeds --name $(NAME) --config $(CONFIG) \
		--runs data/predictions $(foreach k,$(SEED_RUNS),data/seeds/$(k)/predictions)

$(REPORTS)/submission.csv: $(PREDICT)/videos.parquet
	$(PYTHON) -m evaluate submission --name $(NAME) --config $(CONFIG)

submission: $(REPORTS)/submission.csv

# Cross-dataset transfer: every video of NAME scored by the backbones and saved ensemble of FROM, nothing fitted on
# NAME. NAME is prepared from DATA when its tables are missing; its feature cache under FROM's models
# (data/features/NAME_from_FROM) resumes after a kill. Refused when NAME shares videos or families with FROM's
# training videos.
FROM     ?=
TRANSFER := reports/$(NAME)_from_$(FROM)
ifneq ($(filter transfer,$(MAKECMDGOALS)),)
ifeq ($(FROM),)
$(error usage: make transfer FROM=<dataset whose models score> NAME=<dataset to score> [DATA=<its face crops>])
endif
ifeq ($(wildcard models/$(FROM)/ensemble/ensemble.json),)
$(error models/$(FROM): no saved ensemble; run 'make ensemble NAME=$(FROM)' first)
endif
endif

$(TRANSFER)/metrics.json: $(INTERIM)/videos.parquet models/$(FROM)/ensemble/ensemble.json \
		$(wildcard models/$(FROM)/*.keras)
	$(PYTHON) -m evaluate transfer --models $(FROM) --name $(NAME) --config $(CONFIG) $(RUN_ON)

transfer: $(TRANSFER)/metrics.json

test: $(SETUP)
	$(PYTHON) -m pytest -n auto --dist loadfile

bench: $(INTERIM)/videos.parquet
	$(PYTHON) -m bench data --config $(CONFIG)
	$(PYTHON) -m bench faces --config $(CONFIG)
	$(PYTHON) -m bench extract --name $(NAME) --config $(CONFIG)
	$(PYTHON) -m bench rules --config $(CONFIG)

# faces and features here against a 2-worker Dask LocalCluster, on the same data
bench-dask: $(INTERIM)/videos.parquet
	$(PYTHON) -m bench faces --dask 2 --config $(CONFIG)
	$(PYTHON) -m bench extract --dask 2 --name $(NAME) --config $(CONFIG)

# ensemble fit on a generated DFDC-shaped feature cache (SCALE_VIDEOS=119154 by default), local and on 2 Dask workers
SCALE_VIDEOS ?= 119154
bench-scale: | $(SETUP)
	$(PYTHON) -m bench scale --videos $(SCALE_VIDEOS) --config $(CONFIG)

clean:
	rm -rf data/raw data/interim data/features data/predictions data/seeds models
	find reports -mindepth 1 ! -name README.md -exec rm -rf {} +
