"""meta_spider.policies"""
