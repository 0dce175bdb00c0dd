"""The demo tokenizer: byte-level BPE trained on the generated problems, and its transformers wrapper."""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def build_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE (`tokenizers`), digits split one per token, special tokens <pad> <s> </s>.

    No post-processor: encoding never adds special tokens, so `add_special_tokens` True/False (and
    lm-eval's add_bos_token handling) give the same ids.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    return tok


def wrap_tokenizer(tok, max_length: int):
    """The `tokenizers` tokenizer as a transformers tokenizer (left padding, as for batched generation)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=max_length, padding_side="left", clean_up_tokenization_spaces=False,
    )

