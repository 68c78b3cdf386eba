"""How the labels of the public corpora map onto inboxd's nine categories.

Used by ``bench_classify.py``. Only labels with a clear counterpart are mapped;
every label that is not a key here is dropped (the benchmark reports how many
rows that drops). inboxd's categories, as the bundled training data
(``data/training/*.jsonl``) uses them:

- account:   sign-in, passwords/PINs, identity checks, personal details, closing
             the account, account security
- billing:   charges, fees, unknown or double charges, invoices, failed/declined
             payments ("card declined at checkout" is billing in en.jsonl, and
             "信用卡刷卡失敗" in zh-Hant.jsonl)
- refund:    refunds, returns, exchanges, cancellations with money back
- shipping:  delivery of a physical item: where is it, when will it arrive
- technical: something does not work (errors, malfunctions, outages)
- product:   questions about what a product or plan offers (features, specs,
             compatibility, availability) — pre-sales questions included
- complaint, feedback, spam: no corpus label maps onto these cleanly (spam is
             checked separately with sms-spam-en)
"""

from __future__ import annotations

# --- banking77-en: 77 English banking intents (PolyAI) ---------------------------------
# The customer is a bank/card customer writing to the bank. Most intents are about
# transfers, top-ups, cash and exchange rates, which have no inboxd category: dropped.
BANKING77: dict[str, str] = {
    # account: credentials, identity checks, personal data, closing, security of access
    "passcode_forgotten": "account",          # forgot the app passcode = forgot password
    "change_pin": "account",                  # changing a credential
    "pin_blocked": "account",                 # credential locked after wrong tries = "account locked";
                                              # not a malfunction, so not technical
    "verify_my_identity": "account",          # identity check (en.jsonl: "Verify your identity" is account)
    "unable_to_verify_identity": "account",   # identity check failing
    "why_verify_identity": "account",         # question about the identity check
    "edit_personal_details": "account",       # change name/address on the account
    "terminate_account": "account",           # close my account (en.jsonl: "Delete my account")
    "compromised_card": "account",            # someone else is using my card: security, like the
                                              # project's "account may be compromised" rule
    "lost_or_stolen_card": "account",         # block the card: account security. NOT shipping: nothing
                                              # is in transit (card_arrival is the shipping intent)
    "lost_or_stolen_phone": "account",        # the phone with the logged-in app is gone: secure access
    # billing: fees and charges the customer questions, failed payments
    "card_payment_fee_charged": "billing",    # "why was I charged a fee"
    "transfer_fee_charged": "billing",        # fee on a transfer
    "top_up_by_card_charge": "billing",       # fee on a top-up
    "top_up_by_bank_transfer_charge": "billing",  # fee on a top-up
    "cash_withdrawal_charge": "billing",      # fee on an ATM withdrawal
    "exchange_charge": "billing",             # fee on currency exchange
    "extra_charge_on_statement": "billing",   # unexpected extra charge
    "transaction_charged_twice": "billing",   # double charge
    "card_payment_not_recognised": "billing",     # unknown charge on the statement
                                                  # (zh-Hant.jsonl "這筆扣款是什麼？" is billing)
    "direct_debit_payment_not_recognised": "billing",  # unknown direct debit
    "card_payment_wrong_exchange_rate": "billing",     # charged the wrong amount
    "declined_card_payment": "billing",       # payment declined: billing in the training data, not
                                              # technical (the card is not broken; the payment failed)
    # refund
    "request_refund": "refund",
    "Refund_not_showing_up": "refund",        # spelled with a capital R in the data set
    # shipping: only the delivery of the physical card
    "card_arrival": "shipping",               # "my card has not arrived"
    "card_delivery_estimate": "shipping",     # "when will my card arrive"
    # technical: only where something malfunctions
    "card_not_working": "technical",
    "contactless_not_working": "technical",
    "virtual_card_not_working": "technical",
    # product: pre-sales questions about what the product supports
    "supported_cards_and_currencies": "product",
    "fiat_currency_support": "product",
    "country_support": "product",
    "visa_or_mastercard": "product",
    # Dropped (examples): transfers, top-ups, cash withdrawals, exchange rates, pending/
    # reverted payments (status questions, no clear category), card_swallowed and atm_support
    # (an ATM, not our product), order/get physical or virtual card (a request, not delivery),
    # cash_withdrawal_not_recognised (fraud investigation rather than a bill), verify_source_of_funds,
    # age_limit, top_up_limits, apple_pay_or_google_pay (set-up how-to: product or technical).
}

# --- tickets-multilang: synthetic (LLM-written) English tickets, by queue -------------
# Labels are noisy: the queue often does not match the text (e.g. marketing questions
# in "Returns and Exchanges"). Treat the figure as rough.
TICKETS: dict[str, str] = {
    "Technical Support": "technical",
    "IT Support": "technical",                # IT problems: errors, access, devices
    "Service Outages and Maintenance": "technical",  # outages are a "does not work" report
    "Billing and Payments": "billing",
    "Returns and Exchanges": "refund",        # inboxd's refund covers returns and swaps
                                              # (en.jsonl "want to swap for different model")
    "Sales and Pre-Sales": "product",         # pre-purchase questions about what is offered
    # Dropped:
    # "Product Support": a mix of how-to/feature questions (product) and malfunction reports
    #     ("Screen flickering on Dell XPS 13": technical); no single category fits.
    # "Customer Service", "General Inquiry": catch-all queues.
    # "Human Resources": internal employee matters; not customer mail. inboxd has no "other"
    #     category, and calling these spam would test nothing useful.
}

# --- zh-tw-cathay-bank-intents: Traditional Chinese credit-card bot intents -----------
# Texts are deduplicated first; a text listed under intents that map to different
# categories is dropped as contradictory.
CATHAY: dict[str, str] = {
    # billing: paying, receiving and reading the card bill
    "pay.billInfo": "billing",                # 我要繳費 (pay my bill)
    "billDetail.query": "billing",            # 查詢消費明細 (transaction details on the bill)
    "resend.bill": "billing",                 # 補寄帳單 (send the bill again)
    "elecbill.applyElecBill": "billing",      # 申請電子帳單 (e-bill)
    "elecbill.cancelElecBill": "billing",     # 取消電子帳單
    "debitbybk.apply": "billing",             # 自動扣繳卡費 (direct debit of the card bill)
    "installment.apply": "billing",           # 分期繳費 (pay the bill in instalments)
    # account: access credentials and security
    "cpin.enter": "account",                  # 用戶代號/密碼忘記 (forgot user id / password)
    "cpin.cardApply": "account",              # 申請網路銀行 (sign up for online banking)
    "card.lost": "account",                   # 卡片掛失 (report a lost card): security, not shipping
    "rtdm.notify": "account",                 # 盜刷偵測通知 (fraud alert), 1 text
    "rtdm.control": "account",                # 盜刷偵測控管, 1 text
    # product: what the cards offer
    "cardDiscount.Discount": "product",       # 介紹信用卡 / 卡片優惠 (which card, card offers)
    "rights.info": "product",                 # 刷卡保險權益 (insurance benefits of a card);
                                              # zh-Hant.jsonl "信用卡權益" is product
    # Dropped: fallback (580 texts, a grab bag that even contains 我要繳費; it is not spam),
    # credit limit (creditLimit.*: account or billing), application status and documents
    # (cardStatus.*), loans, cash advance, branches/ATMs (place.*), points, airport
    # parking/transfers and roadside assistance (booking a perk, not a product question),
    # bank.turnToReal / notTurnToReal, dialogue.cardList, faq1.eTicket.
}

# --- sms-spam-en --------------------------------------------------------------------------
# spam -> spam; ham -> "not spam" (any other category, or none). Scored as a binary
# spam detector (precision/recall/F1 of predicted == spam), not over nine classes.
SMS = {"spam": "spam", "ham": "not-spam"}

# --- zh-cn-waimai-reviews ------------------------------------------------------------------
# Not categories: 0 = negative review, 1 = positive review. Used only as a complaint-signal
# check (how often negative vs positive reviews get tag "angry" / category "complaint").
WAIMAI = {"0": "negative", "1": "positive"}
