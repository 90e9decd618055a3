"""What a bag-of-words model scores on offline_classify: a reference for the Transformers.

    python -m experiments.classify_reference --data_dir data

Logistic regression (scikit-learn, L2, C chosen on the validation split) on binary
unigram + bigram features of the lower-cased reviews (words seen in at least 2 training
reviews), trained on the training split. Prints the majority-class rate and the accuracy
on the validation and test splits. Issue 17 asks a from-scratch Transformer for 15 points
above the majority class on validation; this says how far a model that only counts words
gets on the same 3,617 training reviews.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np


def load(data_dir: str, split: str) -> tuple[list[str], np.ndarray]:
  texts, labels = [], []
  with open(os.path.join(data_dir, "offline_classify", f"{split}.tsv"), encoding="utf-8") as f:
    for line in f:
      label, text = line.rstrip("\n").split("\t", 1)
      texts.append(text.lower())
      labels.append(int(label))
  return texts, np.array(labels)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data_dir", default="data")
  args = p.parse_args(argv)
  from sklearn.feature_extraction.text import CountVectorizer
  from sklearn.linear_model import LogisticRegression

  splits = {s: load(args.data_dir, s) for s in ("train", "validation", "test")}
  vec = CountVectorizer(ngram_range=(1, 2), min_df=2, binary=True,
                        token_pattern=r"[a-z']+")
  x = {s: (vec.fit_transform if s == "train" else vec.transform)(t)
       for s, (t, _) in splits.items()}
  y = {s: labels for s, (_, labels) in splits.items()}
  best = None
  for c in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0):
    model = LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"])
    acc = {s: float(np.mean(model.predict(x[s]) == y[s])) * 100 for s in ("validation", "test")}
    if best is None or acc["validation"] > best["validation"]:
      best = {"C": c, **acc}
  majority = {s: float(max(y[s].mean(), 1 - y[s].mean())) * 100 for s in ("validation", "test")}
  out = {"features": int(x["train"].shape[1]), "train_examples": int(x["train"].shape[0]),
         "majority": majority, "bag_of_words": best}
  print(json.dumps(out, indent=2))
  return out


if __name__ == "__main__":
  main()
