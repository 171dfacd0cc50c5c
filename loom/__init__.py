"""meta_spider.loom"""
