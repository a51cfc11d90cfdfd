"""Input pipeline: corpora, chat templates with explicit loss masks, packing, seeded mixers.

config           the `data` config section (`default_data_config`, `source_config`)
sources          JSONL / text / Parquet by glob (local, gs://), TFDS data sources
tfds_builder     registers local files as a TFDS dataset (array_record, no TensorFlow)
formatting       records -> rendered text + loss spans (chat, pair, InsCP, response tuning)
examples         tokenization with boolean loss masks (batched)
packing          rows with segment ids, positions, in-segment target shift
packed_dataset   the packing step as a checkpointable grain IterDataset
mixtures         weighted mixture of sources (pure, seeded, random access)
selection        selection by perplexity scores
pipeline         `make_train_iterator`, `make_eval_batches`
"""
