# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cdml-installed
# The torch build put in a new .venv that has none (a CUDA build that also runs on CPU).
# On another machine pass your own, e.g. `make TORCH_SPEC="torch torchvision" test`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# The Debian packages of the built-in datasets: Fashion-MNIST, and the font families the
# glyphs benchmark renders (each contributes at least one family with regular glyphs).
DATASET_PACKAGES := dataset-fashion-mnist
# The run report's test opens it in a real headless browser.
TEST_PACKAGES := chromium
FONT_PACKAGES := fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-freefont-ttf \
	fonts-urw-base35 fonts-cmu fonts-linuxlibertine fonts-ebgaramond fonts-gfs-didot \
	fonts-paratype fonts-roboto-unhinted fonts-open-sans fonts-cantarell fonts-lato \
	fonts-croscore fonts-crosextra-carlito fonts-crosextra-caladea fonts-inconsolata fonts-hack \
	fonts-firacode fonts-junicode fonts-stix fonts-comic-neue fonts-go fonts-inter \
	fonts-jetbrains-mono fonts-quicksand fonts-sil-charis fonts-sil-andika fonts-sil-doulos \
	fonts-vollkorn fonts-oflb-asana-math fonts-yanone-kaffeesatz fonts-play \
	fonts-league-spartan fonts-noto-mono fonts-anonymous-pro fonts-averia-gwf fonts-bebas-neue \
	fonts-cabin fonts-comfortaa fonts-dosis fonts-fantasque-sans fonts-femkeklaver \
	fonts-oldstandard fonts-gfs-artemisia fonts-gfs-neohellenic fonts-adf-accanthis \
	fonts-adf-gillius fonts-adf-universalis fonts-adf-baskervald fonts-adf-berenis \
	fonts-adf-libris fonts-adf-mekanus fonts-adf-oldania fonts-adf-romande fonts-adf-switzera \
	fonts-adf-tribun fonts-adf-verana fonts-tuffy fonts-prociono fonts-radisnoir \
	fonts-sil-gentium fonts-oxygen fonts-mononoki fonts-agave fonts-manrope \
	fonts-century-catalogue fonts-dkg-handwriting fonts-isabella fonts-f500 fonts-breip \
	fonts-klaudia-berenika fonts-lobstertwo fonts-beteckna fonts-blankenburg fonts-jura \
	fonts-karla fonts-opendyslexic fonts-humor-sans fonts-engadget fonts-fanwood \
	fonts-goudybookletter fonts-junction fonts-ocr-b fonts-staypuft fonts-tomsontalks \
	fonts-uralic fonts-gfs-baskerville fonts-gfs-bodoni-classic fonts-gfs-complutum \
	fonts-gfs-gazis fonts-gfs-olga fonts-gfs-porson fonts-gfs-solomos fonts-gfs-theokritos \
	fonts-sil-lateef fonts-b612 fonts-hermit fonts-courier-prime

.PHONY: install test test-all lint demo datasets bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(STAMP)

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -m "not slow"

test-all: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

demo: install
	$(BIN)/cdml demo

# Needs root (apt-get); reads the package lists only when a package is not yet known.
datasets:
	apt-get install -y -q --no-install-recommends $(DATASET_PACKAGES) $(FONT_PACKAGES) \
		$(TEST_PACKAGES) || (apt-get update -q && apt-get install -y -q \
			--no-install-recommends $(DATASET_PACKAGES) $(FONT_PACKAGES) $(TEST_PACKAGES))

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
